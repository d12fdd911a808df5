"""The configuration reference (docs/config.md), generated from the pydantic config models of
every `facegan` subcommand, so it cannot drift: tests/test_config_reference.py compares it.

    .venv/bin/python -m flows.config.reference > docs/config.md
"""
from __future__ import annotations


def _default(name: str, field) -> str:
    from flows.config.base import default_workers

    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if name == "workers" and value == default_workers() and value != 16:
        return "CPU count"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value).replace("\n", " ")


def render() -> str:
    from flows.cli import SUBCOMMANDS, _load

    out = ["# Configuration reference", "",
           "Generated from the pydantic config models (`.venv/bin/python -m flows.config.reference`).",
           "Each table is one subcommand's flags; the same fields (with underscores) are the JSON",
           "`config` parameter of the Prefect deployments and the form in the Prefect UI.",
           ""]
    for name, (config_spec, _runner, help_line) in SUBCOMMANDS.items():
        cls = _load(config_spec)
        out += [f"## `facegan {name}`", "", help_line[0].upper() + help_line[1:] + ".", "",
                "| flag | default | description |", "|---|---|---|"]
        for field_name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("cli") is False:
                continue
            flags = ", ".join(f"`{f}`" for f in ["--" + field_name.replace("_", "-"), *extra.get("aliases", [])])
            desc = (field.description or "").replace("|", "\\|")
            out.append(f"| {flags} | `{_default(field_name, field)}` | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
