"""Generate docs/config.md, the configuration reference, from the flows' pydantic models.

    .venv/bin/python -m facegan.flows.reference > docs/config.md

tests/test_foundation.py fails when docs/config.md is out of date."""

from __future__ import annotations

from facegan.config.base import default_workers
from facegan.flows.cli import SUBCOMMANDS, _load


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is default_workers:
        return "number of CPUs"
    if env := getattr(field.default_factory, "env_var", None):
        return f"${env} or none"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def config_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic config models (`python -m facegan.flows.reference > docs/config.md`).",
        "Each `facegan <command>` flag is a field of the command's config model; the same model is the",
        "Prefect flow's parameter (and the form in the Prefect UI). Environment: `FACEGAN_HOME` (data,",
        "default `./facegan-data`), `MLFLOW_TRACKING_URI` (default `sqlite:///$FACEGAN_HOME/mlflow.db`),",
        "`PREFECT_API_URL` (default: an ephemeral Prefect server per command), `FACEGAN_DEBUG=1` (tracebacks).",
        "",
    ]
    for command, (config_spec, _runner, help_line) in SUBCOMMANDS.items():
        cls = _load(config_spec)
        lines += [
            f"## `facegan {command}` — `{config_spec.replace(':', '.')}`",
            "",
            help_line,
            "",
            "| flag | type | default | description |",
            "|---|---|---|---|",
        ]
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("cli") is False:
                continue
            ann = field.annotation
            tp = ann.__name__ if isinstance(ann, type) else str(ann)
            tp = tp.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None").replace("|", "or")
            desc = (field.description or "").replace("|", "/")
            lines.append(f"| `--{name.replace('_', '-')}` | {tp} | `{_default(field)}` | {desc} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference(), end="")
