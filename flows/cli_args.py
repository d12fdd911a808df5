"""The `facegan` command's flags, generated from a flow's pydantic config: one flag per field,
its help stating the field's description and default, argparse's and pydantic's errors as one line.
The config reference (flows/reference.py) reads the same fields."""

from __future__ import annotations

import argparse
import importlib
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal


def load(spec: str) -> Any:
    """The object a "module:attribute" string names (imported when asked for)."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def cli_fields(config_cls) -> Iterator[tuple[str, Any, dict]]:
    """(name, field, json_schema_extra) of every field the command line shows (not `cli=False`)."""
    for name, field in config_cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("cli") is not False:
            yield name, field, extra


def help_text(field) -> str:
    """The description, then "(required)" or the default (unless the description states it)."""
    description = field.description or ""
    if field.is_required():
        return f"{description} (required)"
    if "(default" in description:
        return description
    default = field.get_default(call_default_factory=True)
    shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, list) else default)
    return f"{description} (default: {shown})"


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _scalar(tp) -> tuple[Callable, list | None]:
    """argparse type and choices for a scalar annotation (a Literal's choices; paths as text)."""
    if typing.get_origin(tp) is Literal:
        choices = list(typing.get_args(tp))
        return type(choices[0]), choices
    return (tp if tp in (int, float) else str), None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    """A flag per field: --<name> (and its aliases); bools as --x/--no-x, lists as one or more values.
    Unset flags are left out, so the config's own defaults apply."""
    for name, field, extra in cli_fields(config_cls):
        tp = _unwrap_optional(field.annotation)
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "required": field.is_required()}
        choices = None
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            listed = typing.get_origin(tp) in (list, tuple)
            conv, choices = _scalar(typing.get_args(tp)[0] if listed else tp)
            kwargs.update(type=conv, metavar=name.upper())
            if listed:
                kwargs.update(nargs="+", action="extend")
        helptext = help_text(field)
        kwargs["help"] = f"{helptext} [{'|'.join(map(str, choices))}]" if choices else helptext
        parser.add_argument("--" + name.replace("_", "-"), *extra.get("aliases", []), **kwargs)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's own errors (a value of the wrong type, a missing or unknown option) as one line,
    like every other rejected command, instead of the usage block; --help still shows it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def format_validation_error(exc) -> str:
    """A pydantic ValidationError as one line naming the flags: "invalid parameters: --size 33: ..."."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int))
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        flag = f"--{loc.replace('_', '-')}" if loc else ""
        value = err.get("input")
        shown = f" {value!r}" if flag and not isinstance(value, dict) else ""
        parts.append(f"{flag}{shown}: {msg}" if flag else msg)
    return "invalid parameters: " + "; ".join(parts)
