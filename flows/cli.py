"""The `facegan` command. Each subcommand's flags are generated from its flow's pydantic config,
so `--help`, the Prefect form and the config reference always agree. Thin: parse, validate, run.

Errors a user can fix (FaceganError, invalid parameters, a full disk) print one line and exit with
code 2. Ctrl-C (SIGTERM alike) prints one line, where it stopped and the command that resumes, marks
the MLflow run KILLED and the Prefect flow run Cancelled, and exits with 130 (143). A temporary
Prefect server dies with the command, however the command ends. Set FACEGAN_DEBUG=1 for full
tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from facegan.config.gans import GANS

# name: (config class, runner, one-line help). The runner takes the config and returns what to print.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "acquire": (
        "facegan.config.acquire:AcquireConfig",
        "facegan.flows.acquire:main",
        "import a local folder or download images/archives/presets/scraped pages",
    ),
    "crop": (
        "facegan.config.crop:CropConfig",
        "facegan.flows.crop:main",
        "detect faces (Haar) and crop them into 48/64/128 px datasets",
    ),
    "evaluate": (
        "facegan.config.evaluate:EvaluateConfig",
        "facegan.flows.evaluate:main",
        "score generators with face_recognition: the Table 1 report + real control",
    ),
    "train": (
        "facegan.config.train:TrainConfig",
        "facegan.flows.train:main",
        f"train a GAN ({', '.join(GANS)}) on a crop dataset",
    ),
    "generate": (
        "facegan.config.generate:GenerateConfig",
        "facegan.flows.generate:main",
        "write N faces from a trained generator",
    ),
    "pipeline": (
        "facegan.config.pipeline:PipelineConfig",
        "facegan.flows.pipeline:main",
        "the whole DAG: acquire -> crop -> train -> evaluate, nested under one MLflow run",
    ),
    "serve": (
        "facegan.config.serve:ServeConfig",
        "facegan.flows.serve:main",
        "serve every deployment (nightly pipeline + on-demand stages) from this process",
    ),
    "app": (
        "facegan.config.app:AppConfig",
        "facegan.flows.app:main",
        "web page: pick a registered model, generate 10 faces or 1, download them",
    ),
    "ui": (
        "facegan.config.ui:UiConfig",
        "facegan.flows.ui:main",
        "the MLflow UI on facegan's tracking store, opened on the facegan experiment's runs",
    ),
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
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": helptext,
            "required": field.is_required(),
        }
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
        prog="facegan",
        description="Web images -> face crops -> GANs -> face_recognition realism report "
        "(Prefect flows, tracked in MLflow). Data: $FACEGAN_HOME (default ./facegan-data).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (config_spec, _runner, help_line) in SUBCOMMANDS.items():
        config_cls = _load(config_spec)
        p = sub.add_parser(
            name,
            help=help_line,
            description=(config_cls.__doc__ or help_line).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
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

    from facegan.config.errors import FaceganError

    class _DropTraceback(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            exc = record.exc_info[1] if record.exc_info else None
            if isinstance(exc, (FaceganError, KeyboardInterrupt)):
                return False
            msg = record.getMessage() if record.args else str(record.msg)
            if any(signal in msg for signal in _INTERRUPT_MESSAGES):
                # Ctrl-C / SIGTERM: the CLI prints one line and marks this flow run Cancelled
                flow_run = getattr(record, "flow_run_id", None)
                if flow_run and getattr(record, "task_run_id", None) is None:
                    _INTERRUPTED_FLOW_RUNS.append(str(flow_run))
                return False
            if exc is not None and _is_disk_error(exc):
                return False
            return not any(cls in msg for cls in _error_names())

    for logger_name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(logger_name).handlers:
            handler.addFilter(_DropTraceback())


def _error_names() -> list[str]:
    """ "BusyError:" and the like: every FaceganError class, as Prefect's state messages name them."""
    from facegan.config.errors import FaceganError

    names, todo = set(), [FaceganError]
    while todo:
        cls = todo.pop()
        names.add(f"{cls.__name__}:")
        todo.extend(cls.__subclasses__())
    return sorted(names)


# Prefect's "Crash detected!" and "Finished in state Crashed(...)" lines for a Ctrl-C or SIGTERM
# (and the crop shards the task runner cancels on its way out)
_INTERRUPT_MESSAGES = (
    "aborted by an interrupt signal",
    "aborted by a termination signal",
    "Task run cancelled by the task runner",
)
_INTERRUPTED_FLOW_RUNS: list[str] = []


def _is_disk_error(exc: BaseException) -> bool:
    tracking = sys.modules.get("facegan.tasks.common.tracking")
    return bool(tracking and tracking.is_disk_error(exc))


def _disk_error_line(exc: BaseException) -> str:
    """One line for a full disk or a file size limit: what could not be written, and the room left."""
    from facegan.tasks.common import tracking

    path = None
    cause: BaseException | None = exc
    while cause is not None and path is None:
        path = getattr(cause, "filename", None)
        cause = cause.__cause__ or cause.__context__
    if path is None:
        uri = tracking.tracking_uri()
        path = tracking._sqlite_file(uri) or os.environ.get("FACEGAN_HOME") or "facegan-data"
    return f"cannot write {path}: the disk is full or a file size limit is set ({tracking.disk_message(Path(path))})"


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the same cleanup (runs marked KILLED, servers stopped)."""


TERMINATED = "terminated (SIGTERM)"


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(TERMINATED)


def _cancel_interrupted_flow_runs() -> None:
    """Mark the flow runs a Ctrl-C crashed as Cancelled (best effort: the server may be gone)."""
    if not _INTERRUPTED_FLOW_RUNS:
        return
    try:
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with get_client(sync_client=True) as client:
            for flow_run in dict.fromkeys(_INTERRUPTED_FLOW_RUNS):
                client.set_flow_run_state(flow_run, Cancelled(message="interrupted by the user (Ctrl-C)"), force=True)
    except Exception:  # noqa: BLE001 - the Cancelled state is a courtesy, not worth a traceback
        pass


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
    from facegan.flows.preflight import check

    for note in check(command, config):  # bad input fails here: nothing heavy imported or started yet
        print(note, file=sys.stderr, flush=True)
    _check_not_busy(command, config)
    runner = _load(runner_spec)  # imports Prefect, which sets up its log handlers
    _quiet_expected_errors()
    if command in FLOW_COMMANDS:
        from facegan.tasks.common import tracking

        tracking.ensure_store()  # before a Prefect server starts: a full disk answers at once
        _start_temporary_server()
    return runner(config)


def _check_not_busy(command: str, config) -> None:
    """A second `train` of a run, or `crop` into a dataset, that another process is writing is
    refused here, in one line, before a Prefect server starts (the flow takes the lock itself)."""
    from facegan.tasks.common import locks

    if command == "train":
        from facegan.tasks.common.paths import resolve_dataset_path

        name = config.run_name(resolve_dataset_path(config.dataset, config.size)[0])
        locks.check_free(locks.run_lock(name), locks.training(name))
    elif command == "crop":
        from facegan.tasks.common.paths import resolve_raw

        name = config.name or resolve_raw(config.raw)
        locks.check_free(locks.dataset_lock(name), locks.cropping(name))


# The commands that run Prefect flows: they track to MLflow and may start a temporary Prefect server.
FLOW_COMMANDS = ("acquire", "crop", "train", "generate", "evaluate", "pipeline")
PR_SET_PDEATHSIG = 1


def _die_with(parent: int):
    """A Popen preexec_fn: the child gets SIGTERM when `parent` (the thread that forks it) ends,
    however it ends (SIGKILL, the OOM killer), so a killed command leaves no server behind."""
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
            os._exit(1)

    return preexec


def _start_temporary_server() -> None:
    """Without a Prefect server (PREFECT_API_URL unset), start Prefect's temporary one here, in the
    main thread, as a child that dies with this process: Prefect stops it at exit, but a command
    killed by SIGKILL (or SIGTERM before this process handles it) would otherwise leave an
    orphaned uvicorn of ~230 MB behind. Prefect's flows then reuse this server (its singleton)."""
    import subprocess

    if not sys.platform.startswith("linux"):
        return
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return
    from prefect.server.api import server as server_module

    preexec = _die_with(os.getpid())

    class _Popen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("preexec_fn", preexec)
            super().__init__(*args, **kwargs)

    class _Subprocess(types.ModuleType):  # prefect's server module sees this as `subprocess`
        Popen = _Popen

        def __getattr__(self, name):
            return getattr(subprocess, name)

    server_module.subprocess = _Subprocess("subprocess")
    server_module.SubprocessASGIServer().start()


def main(argv: list[str] | None = None) -> None:
    # No internet here: Prefect's telemetry would log an error on every ephemeral server start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A busy machine can take longer than Prefect's default 20 s to start the ephemeral server.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    import shlex
    import signal
    import threading

    from facegan.config.errors import FaceganError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    previous = None
    if command in FLOW_COMMANDS and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        result = run(argv)
    except FaceganError as exc:
        if os.environ.get("FACEGAN_DEBUG"):
            raise
        print(f"facegan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        if os.environ.get("FACEGAN_DEBUG"):
            raise
        _cancel_interrupted_flow_runs()
        how = TERMINATED if isinstance(exc, Interrupted) else "interrupted"
        where = str(exc) if exc.args and str(exc) != TERMINATED else ""
        resume = f"; resume with: facegan {shlex.join(argv)}" if command in FLOW_COMMANDS else ""
        print(f"facegan: {how}{' ' + where if where else ''}{resume}", file=sys.stderr)
        sys.exit(143 if isinstance(exc, Interrupted) else 130)
    except Exception as exc:
        if os.environ.get("FACEGAN_DEBUG") or not _is_disk_error(exc):
            raise
        print(f"facegan: error: {_disk_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result is not None:
        print(result)


if __name__ == "__main__":
    main()
