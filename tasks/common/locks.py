"""Process locks for one writer at a time (a raw set, a training run, a crop dataset, the MLflow store's
creation): `flock` on a small lock file that records the holder's pid.

The kernel drops an flock lock when its process ends, however it ends (Ctrl-C, SIGKILL, the OOM
killer), so a lock left by a killed process is taken over by the next one with nothing to clean.
Locks are re-entrant within one process (a flow's steps take and release the same one)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from facegan.config.errors import InputError


class BusyError(InputError):
    """Another process is writing the same run or dataset."""


_HELD: dict[str, list[int]] = {}  # lock path -> [fd, depth]
_GUARD = threading.Lock()


def run_lock(name: str) -> Path:
    """The lock of a training run (held from opening the run to its last step)."""
    from facegan.tasks.common.paths import runs_root

    return runs_root() / ".locks" / f"{name}.lock"


def raw_lock(name: str) -> Path:
    """The lock of a raw set (held by an acquire from opening the raw set to its manifest)."""
    from facegan.tasks.common.paths import raw_root

    return raw_root() / ".locks" / f"{name}.lock"


def dataset_lock(name: str) -> Path:
    """The lock of a crop dataset (held from planning to the swap-in of its sizes)."""
    from facegan.tasks.common.paths import datasets_root

    return datasets_root() / ".locks" / f"{name}.lock"


def training(name: str) -> str:
    return f"run {name!r} is being trained"


def cropping(name: str) -> str:
    return f"dataset {name!r} is being cropped"


def acquiring(name: str) -> str:
    return f"raw set {name!r} is being acquired"


def check_free(path: str | Path, doing: str) -> None:
    """Raise BusyError now when another process holds the lock (the CLI asks before a Prefect
    server starts; the flow takes the lock itself)."""
    path = Path(path)
    if path.is_file() and str(path.resolve()) not in _HELD:
        acquire(path, doing)
        release(path)


def holder(path: Path) -> int | None:
    """The pid recorded in a lock file (None when unreadable or empty)."""
    try:
        return int(Path(path).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def acquire(path: str | Path, doing: str, wait: bool = False) -> None:
    """Take the lock at `path` for this process. When another process holds it: wait for it
    (`wait`), or raise BusyError "<doing> by pid N"."""
    key = str(Path(path).resolve())
    with _GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            return
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            pid = holder(Path(key))
            by = f"pid {pid}" if pid else "another process"
            raise BusyError(f"{doing} by {by}: wait for it to finish or stop it, then run this again") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = [fd, 1]


def release(path: str | Path) -> None:
    """Release one hold of the lock (the last one unlocks it); a lock not held is ignored."""
    key = str(Path(path).resolve())
    with _GUARD:
        entry = _HELD.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _HELD[key]
        fd = entry[0]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor drops the flock


@contextlib.contextmanager
def held(path: str | Path, doing: str, wait: bool = False) -> Iterator[None]:
    acquire(path, doing, wait)
    try:
        yield
    finally:
        release(path)
