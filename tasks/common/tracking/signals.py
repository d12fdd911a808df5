"""Store writes take a Ctrl-C or SIGTERM after they commit, not inside.

MLflow's sqlite session rolls back on an Exception only: a KeyboardInterrupt (or Prefect's
TerminationSignal) raised inside a write leaves that session's transaction open and the store's
write lock held by this process, so the interrupted run's own KILLED status then waits for the lock
and fails with "database is locked" and a traceback. Handlers run on the main thread only, so only
its writes can be interrupted; there the signal is held until the write returns, then re-raised
to the handler that was in place (the CLI's, Prefect's or Python's)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

from facegan.tasks.common.tracking.store import tracking_uri

SIGNALS = (signal.SIGINT, signal.SIGTERM)
F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def signals_after() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver the first one caught;
    a second one is delivered at once (a write that hangs can still be stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    held = [sig for sig, handler in previous.items() if handler is not None]  # None: set outside Python

    def restore() -> None:
        for sig in held:
            signal.signal(sig, previous[sig])
        held.clear()

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)
        if len(caught) > 1:
            restore()
            signal.raise_signal(signum)

    for sig in held:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        restore()
        if len(caught) == 1:  # a second one was delivered already
            signal.raise_signal(caught[0])


def uninterrupted(method: F) -> F:
    """signals_after() around a function that writes to an sqlite store (a remote store's
    interrupted request holds no lock of ours: nothing is held there)."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not tracking_uri().startswith("sqlite:"):
            return method(*args, **kwargs)
        with signals_after():
            return method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
