"""How the `facegan` command ends when something goes wrong: errors a user can fix as one line
(Prefect's tracebacks of them dropped from the console, a full disk named with the room left), and
Ctrl-C / SIGTERM (the flow runs they crashed marked Cancelled)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from facegan.config.errors import TERMINATED, Interrupted, as_interrupt


def quiet_expected_errors() -> None:
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
            if exc is not None and is_disk_error(exc):
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


def is_disk_error(exc: BaseException) -> bool:
    tracking = sys.modules.get("facegan.tasks.common.tracking")
    return bool(tracking and tracking.is_disk_error(exc))


def disk_error_line(exc: BaseException) -> str:
    """One line for a full disk or a file size limit: what could not be written, and the room left."""
    from facegan.tasks.common.tracking import store

    path = None
    cause: BaseException | None = exc
    while cause is not None and path is None:
        path = getattr(cause, "filename", None)
        cause = cause.__cause__ or cause.__context__
    if path is None and _from_the_store(exc):
        path = store.sqlite_file(store.tracking_uri())
    if path is None:  # a write that names no file (numpy's short write): where facegan writes
        path = os.environ.get("FACEGAN_HOME") or "facegan-data"
    return f"cannot write {path}: the disk is full or a file size limit is set ({store.disk_message(Path(path))})"


def _from_the_store(exc: BaseException | None) -> bool:
    """Whether the MLflow store's database raised the error (sqlite's "database or disk is full")."""
    while exc is not None:
        if "database" in str(exc).lower() or type(exc).__module__.split(".")[0] in ("sqlite3", "sqlalchemy"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def raise_interrupted(signum, frame) -> None:
    raise Interrupted(TERMINATED)


def wrapped_interrupt(exc: BaseException) -> KeyboardInterrupt | None:
    """A Ctrl-C or SIGTERM that a library caught and re-raised as its own error: in a chained
    exception, or in the message of pydantic-core's serializer, which turns one raised while it
    runs (Prefect's settings are dumped as it is imported) into PydanticSerializationError
    "Error calling function `...`: KeyboardInterrupt: "."""
    from pydantic_core import PydanticSerializationError

    seen: BaseException | None = exc
    while seen is not None:
        if (interrupt := as_interrupt(seen)) is not None:
            return interrupt
        seen = seen.__cause__ or seen.__context__
    if not isinstance(exc, PydanticSerializationError):
        return None
    if f"Interrupted: {TERMINATED}" in str(exc):
        return Interrupted(TERMINATED)
    return KeyboardInterrupt() if "KeyboardInterrupt" in str(exc) else None


def cancel_interrupted_flow_runs() -> None:
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
