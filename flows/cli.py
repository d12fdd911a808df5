"""The `facegan` command. Each subcommand's flags are generated from its flow's pydantic config,
so `--help`, the Prefect form and the config reference always agree. Thin: parse, validate, run.

Errors a user can fix (FaceganError, invalid parameters) print one line and exit with code 2.
Set FACEGAN_DEBUG=1 for full tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal

# name: (config class, runner, one-line help). The runner takes the config and returns what to print.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "acquire": ("config.acquire:AcquireConfig", "flows.acquire:main",
                "import a local folder or download images/archives/presets/scraped pages"),
    "crop": ("config.crop:CropConfig", "flows.crop:main",
             "detect faces (Haar) and crop them into 48/64/128 px datasets"),
    "evaluate": ("config.evaluate:EvaluateConfig", "flows.evaluate:main", "score generators with face_recognition: the Table 1 report + real control"),
    "train": ("config.train:TrainConfig", "flows.train:main", "train a GAN (dcgan, wgan-gp, began) on a crop dataset"),
    "generate": ("config.generate:GenerateConfig", "flows.generate:main", "write N faces from a trained generator"),
    "pipeline": ("config.pipeline:PipelineConfig", "flows.pipeline:main", "the whole DAG: acquire -> crop -> train -> evaluate, nested under one MLflow run"),
    "serve": ("config.serve:ServeConfig", "flows.serve:main", "serve every deployment (nightly pipeline + on-demand stages) from this process"),
    "app": ("config.app:AppConfig", "flows.app:main", "web page: pick a registered model, generate 10 faces or 1, download them"),
    "ui": ("config.ui:UiConfig", "flows.ui:main", "the MLflow UI on facegan's tracking store, opened on the facegan experiment's runs"),
}


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _scalar(tp) -> tuple[Callable | None, list | None]:
    """argparse type and choices for a scalar annotation."""
    if typing.get_origin(tp) is Literal:
        choices = list(typing.get_args(tp))
        return type(choices[0]), choices
    if tp in (int, float, str):
        return tp, None
    if tp is Path:
        return str, None
    return str, None


def add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    for name, field in config_cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("cli") is False:
            continue
        flag = "--" + name.replace("_", "-")
        flags = [flag, *extra.get("aliases", [])]
        tp = _unwrap_optional(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = "none" if default is None else (" ".join(map(str, default)) if isinstance(default, list) else default)
        description = field.description or ""
        if field.is_required():
            helptext = f"{description} (required)"
        elif "(default" in description:  # the description states its default itself
            helptext = description
        else:
            helptext = f"{description} (default: {shown})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": helptext,
                                  "required": field.is_required()}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            conv, choices = _scalar(typing.get_args(tp)[0])
            kwargs.update(nargs="+", type=conv, metavar=name.upper(), action="extend")
            if choices:
                kwargs["help"] = f"{helptext} [{'|'.join(map(str, choices))}]"
        else:
            conv, choices = _scalar(tp)
            kwargs.update(type=conv, metavar=name.upper())
            if choices:
                kwargs["help"] = f"{helptext} [{'|'.join(map(str, choices))}]"
        parser.add_argument(*flags, **kwargs)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's own errors (a value of the wrong type, a missing or unknown option) as one line,
    like every other rejected command, instead of the usage block; --help still shows it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="facegan", description="Web images -> face crops -> GANs -> face_recognition realism report "
        "(Prefect flows, tracked in MLflow). Data: $FACEGAN_HOME (default ./facegan-data).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (config_spec, _runner, help_line) in SUBCOMMANDS.items():
        config_cls = _load(config_spec)
        p = sub.add_parser(name, help=help_line, description=(config_cls.__doc__ or help_line).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_config_arguments(p, config_cls)
    return parser


def format_validation_error(exc) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if not isinstance(p, int))
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        flag = f"--{loc.replace('_', '-')}" if loc else ""
        value = err.get("input")
        shown = f" {value!r}" if flag and not isinstance(value, dict) else ""
        parts.append(f"{flag}{shown}: {msg}" if flag else msg)
    return "invalid parameters: " + "; ".join(parts)


def _quiet_expected_errors() -> None:
    """Prefect logs a flow's exception with its traceback; for errors the user can fix we keep
    just the message, so the console shows one clear line."""
    import logging

    from config.errors import FaceganError

    class _DropTraceback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, FaceganError):
                return False
            msg = record.getMessage() if record.args else str(record.msg)
            return not any(cls in msg for cls in _ERROR_NAMES)

    from config import errors as errors_module

    _ERROR_NAMES[:] = [f"{n}:" for n in dir(errors_module) if n.endswith("Error")]
    for logger_name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(logger_name).handlers:
            handler.addFilter(_DropTraceback())


_ERROR_NAMES: list[str] = []


def run(argv: list[str] | None = None) -> Any:
    from pydantic import ValidationError

    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    config_spec, runner_spec, _ = SUBCOMMANDS[command]
    try:
        config = _load(config_spec)(**args)
    except ValidationError as exc:
        parser.exit(2, f"facegan {command}: error: {format_validation_error(exc)}\n")
    from flows.preflight import check

    for note in check(command, config):  # bad input fails here: nothing heavy imported or started yet
        print(note, file=sys.stderr, flush=True)
    runner = _load(runner_spec)  # imports Prefect, which sets up its log handlers
    _quiet_expected_errors()
    return runner(config)


def main(argv: list[str] | None = None) -> None:
    # No internet here: Prefect's telemetry would log an error on every ephemeral server start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A busy machine can take longer than Prefect's default 20 s to start the ephemeral server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from config.errors import FaceganError

    try:
        result = run(argv)
    except FaceganError as exc:
        if os.environ.get("FACEGAN_DEBUG"):
            raise
        print(f"facegan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("facegan: interrupted", file=sys.stderr)
        sys.exit(130)
    if result is not None:
        print(result)


if __name__ == "__main__":
    main()
