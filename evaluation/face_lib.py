"""The face_recognition library, imported safely, and a process pool to run it on every core.

face_recognition prints a message and calls quit() when its model package cannot be imported,
which would kill the whole flow with no traceback and exit code 0. `load()` turns that (and any
import failure of dlib) into a FaceganError with one clear line.

face_recognition (dlib) is single-threaded, so scoring runs in a pool of worker processes (small
jobs, when no pool is running, in this process: see SMALL_JOB).
The pool is created once per process and reused (the trainer scores every K steps); workers
are started with "spawn" so they never inherit torch/Prefect threads from the parent.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from facegan.config.base import default_workers
from facegan.config.errors import FaceganError

_MODULE = None
_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
# Up to this many images are scored in this process when no pool is running: each pool worker
# spends about 2 CPU-seconds importing dlib and loading its models, about the cost of encoding
# 40 faces, so a small job is cheaper here (a running pool is always used).
SMALL_JOB = 64


class FaceLibraryError(FaceganError):
    """face_recognition / dlib / face_recognition_models is missing or broken."""


def load():
    """Import face_recognition, or raise FaceLibraryError with a clear message."""
    global _MODULE
    if _MODULE is not None:
        return _MODULE
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
            from PIL import ImageFile

            truncated = ImageFile.LOAD_TRUNCATED_IMAGES
            import face_recognition

            # face_recognition sets PIL's process-wide flag to accept truncated files: restore it, so
            # that a process which scored faces still rejects truncated images when it imports them
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated
    except SystemExit:  # face_recognition calls quit() when face_recognition_models is missing
        said = " ".join(printed.getvalue().split())[:200]
        raise FaceLibraryError(
            "face_recognition could not load its models (face_recognition_models "
            f"and setuptools<81 are needed; run ./setup.sh){': ' + said if said else ''}"
        ) from None
    except ImportError as exc:
        raise FaceLibraryError(
            f"face_recognition is not importable ({exc}); run ./setup.sh to install "
            "dlib-bin, face_recognition (--no-deps) and face_recognition_models"
        ) from None
    _MODULE = face_recognition
    return face_recognition


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    load()


def _exit_when_orphaned(parent: int) -> None:
    """A worker whose parent was SIGKILLed (no chance to stop its pool) exits within a second
    instead of living on, adopted by init."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _pool(workers: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        shutdown()
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        _POOL_WORKERS = workers
    return _POOL


def shutdown() -> None:
    """Stop the worker processes (they are restarted on the next parallel call)."""
    global _POOL, _POOL_WORKERS
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
    _POOL, _POOL_WORKERS = None, 0


atexit.register(shutdown)


def map_chunks(
    fn: Callable[[np.ndarray], Sequence],
    images: np.ndarray,
    workers: int | None = None,
    chunk_size: int = 32,
    progress: str | None = None,
) -> list:
    """Apply `fn` (a module-level function: chunk of images -> one result per image) over `images`
    in chunks, in a process pool when that helps. Results come back in input order."""
    load()  # fail here, in the caller, with a clear message (not as a broken pool)
    workers = default_workers() if workers is None else max(1, int(workers))
    chunks = [images[i : i + chunk_size] for i in range(0, len(images), chunk_size)]
    small = len(images) <= SMALL_JOB and _POOL is None  # less work than starting the workers
    if workers == 1 or len(chunks) <= 1 or small:
        results = map(fn, chunks)
    else:
        from concurrent.futures.process import BrokenProcessPool

        try:
            results = _pool(workers).map(fn, chunks)
        except BrokenProcessPool:  # a worker died earlier (e.g. killed): start a fresh pool
            shutdown()
            results = _pool(workers).map(fn, chunks)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc=progress, unit="img", leave=False)
        out = []
        for chunk, result in zip(chunks, results):
            out.extend(result)
            bar.update(len(chunk))
        bar.close()
        return out
    return [r for result in results for r in result]
