"""Generate docs/config.md, the configuration reference, from the flows' pydantic models.

    .venv/bin/python -m facegan.flows.reference > docs/config.md

tests/test_foundation.py fails when docs/config.md is out of date."""

from __future__ import annotations

import pandas as pd

from facegan.config.base import default_workers
from facegan.flows.cli import SUBCOMMANDS
from facegan.flows.cli_args import cli_fields, load


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


def _type(field) -> str:
    ann = field.annotation
    tp = ann.__name__ if isinstance(ann, type) else str(ann)
    return tp.replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None").replace("|", "or")


def _flags_table(cls) -> str:
    """One row per flag of a config model: flag, type, default, description."""
    rows = [
        {
            "flag": f"`--{name.replace('_', '-')}`",
            "type": _type(field),
            "default": f"`{_default(field)}`",
            "description": (field.description or "").replace("|", "/"),
        }
        for name, field, _extra in cli_fields(cls)
    ]
    table = pd.DataFrame(rows, columns=["flag", "type", "default", "description"])
    return table.to_markdown(index=False, disable_numparse=True, stralign=None, numalign=None)


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
        cls = load(config_spec)
        title = f"## `facegan {command}` — `{config_spec.replace(':', '.')}`"
        lines += [title, "", help_line, "", _flags_table(cls), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference(), end="")
