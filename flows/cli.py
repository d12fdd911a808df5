"""The `facegan` command. Each subcommand's flags are generated from its flow's pydantic config,
so `--help`, the Prefect form and the config reference always agree. Thin: parse, validate, run.

Errors a user can fix (FaceganError, invalid parameters, a full disk) print one line and exit with
code 2. Ctrl-C (SIGTERM alike) prints one line, where it stopped and the command that resumes, marks
the MLflow run KILLED and the Prefect flow run Cancelled, and exits with 130 (143). A temporary
Prefect server dies with the command, however the command ends. Set FACEGAN_DEBUG=1 for full
tracebacks.

The flags are made in flows/cli_args.py, the one-line errors and interrupts in flows/cli_errors.py;
this module holds the commands and runs them.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from typing import Any

from facegan.config.gans import GANS
from facegan.flows import cli_errors
from facegan.flows.cli_args import OneLineErrorParser, add_config_arguments, format_validation_error, load

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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="facegan",
        description="Web images -> face crops -> GANs -> face_recognition realism report "
        "(Prefect flows, tracked in MLflow). Data: $FACEGAN_HOME (default ./facegan-data).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (config_spec, _runner, help_line) in SUBCOMMANDS.items():
        config_cls = load(config_spec)
        p = sub.add_parser(
            name,
            help=help_line,
            description=(config_cls.__doc__ or help_line).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_config_arguments(p, config_cls)
    return parser


def run(argv: list[str] | None = None) -> Any:
    from pydantic import ValidationError

    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    config_spec, runner_spec, _ = SUBCOMMANDS[command]
    try:
        config = load(config_spec)(**args)
    except ValidationError as exc:
        parser.exit(2, f"facegan {command}: error: {format_validation_error(exc)}\n")
    from facegan.flows.preflight import check

    for note in check(command, config):  # bad input fails here: nothing heavy imported or started yet
        print(note, file=sys.stderr, flush=True)
    runner = load(runner_spec)  # imports Prefect, which sets up its log handlers
    cli_errors.quiet_expected_errors()
    if command in FLOW_COMMANDS:
        from facegan.tasks.common import tracking

        tracking.ensure_store()  # before a Prefect server starts: a full disk answers at once
        _start_temporary_server()
    return runner(config)


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
    import signal
    import threading

    from facegan.config.errors import FaceganError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    previous = None
    if command in FLOW_COMMANDS and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, cli_errors.raise_interrupted)
    try:
        result = run(argv)
    except FaceganError as exc:
        if os.environ.get("FACEGAN_DEBUG"):
            raise
        print(f"facegan: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("FACEGAN_DEBUG"):
            raise
        if (interrupt := cli_errors.wrapped_interrupt(exc)) is not None:
            _exit_interrupted(interrupt, argv, command)
        if not cli_errors.is_disk_error(exc):
            raise
        print(f"facegan: error: {cli_errors.disk_error_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except BaseException as exc:  # Ctrl-C, SIGTERM (ours, or Prefect's TerminationSignal); SystemExit passes
        if (interrupt := cli_errors.as_interrupt(exc)) is None or os.environ.get("FACEGAN_DEBUG"):
            raise
        _exit_interrupted(interrupt, argv, command)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result is not None:
        print(result)


def _exit_interrupted(exc: KeyboardInterrupt, argv: list[str], command: str | None) -> None:
    """One line for a Ctrl-C (exit 130) or SIGTERM (143), with the command that resumes."""
    import shlex

    cli_errors.cancel_interrupted_flow_runs()
    how = cli_errors.TERMINATED if isinstance(exc, cli_errors.Interrupted) else "interrupted"
    where = str(exc) if exc.args and str(exc) != cli_errors.TERMINATED else ""
    resume = f"; resume with: facegan {shlex.join(argv)}" if command in FLOW_COMMANDS else ""
    print(f"facegan: {how}{' ' + where if where else ''}{resume}", file=sys.stderr)
    sys.exit(143 if isinstance(exc, cli_errors.Interrupted) else 130)


if __name__ == "__main__":
    main()
