"""The MLflow store: where it is (MLFLOW_TRACKING_URI, else sqlite:///$FACEGAN_HOME/mlflow.db with
artifacts in $FACEGAN_HOME/mlartifacts or $FACEGAN_MLFLOW_ARTIFACTS), its atomic creation, and the
full-disk errors that can stop it. `_client()` is every tracking module's way in."""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from facegan.config.errors import FaceganError
from facegan.tasks.common.paths import data_home

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def _not_a_disk_error(record: logging.LogRecord) -> bool:
    """MLflow logs a full disk's SQLAlchemy error with a 150-line traceback before raising it;
    the command that gets the error reports it in one line (flows/cli_errors.py)."""
    return not (record.exc_info and is_disk_error(record.exc_info[1]))


logging.getLogger("mlflow.store.db.utils").addFilter(_not_a_disk_error)


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    home = data_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'mlflow.db'}"


def _client() -> MlflowClient:
    uri = tracking_uri()
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


# --- the store's creation: atomic, so that a killed first command never leaves a half-made store --


class StoreError(FaceganError):
    """The MLflow store cannot be created or opened (full disk, out-of-date schema)."""


_STORES_READY: set[str] = set()
DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
DISK_MESSAGES = ("disk i/o error", "database or disk is full", "no space left", "file too large")
# numpy's ndarray.tofile (np.save) on a short write: an OSError with no errno
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def sqlite_file(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _store_state(path: Path) -> tuple[str | None, int]:
    """(schema revision, number of runs) of a sqlite MLflow store; (None, 0) for a store killed
    before it got either."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None, 0
    try:

        def one(sql: str):
            try:
                row = con.execute(sql).fetchone()
                return row[0] if row else None
            except sqlite3.Error:
                return None

        return one("SELECT version_num FROM alembic_version"), int(one("SELECT count(*) FROM runs") or 0)
    finally:
        con.close()


def is_disk_error(exc: BaseException | None) -> bool:
    """A full disk or a file size limit (ulimit -f) anywhere in an exception's chain."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            return True
        if any(m in str(exc).lower() for m in DISK_MESSAGES) or SHORT_WRITE.search(str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_message(path: Path) -> str:
    """Where `path` lives and how much room is left there (free space, file size limit)."""
    import resource
    import shutil

    folder = Path(path).resolve().parent
    while not folder.exists():
        folder = folder.parent
    mount = folder
    while not os.path.ismount(mount):
        mount = mount.parent
    free = shutil.disk_usage(folder).free
    room = f"{free / 2**30:.1f} GiB" if free >= 2**30 else f"{free / 2**20:.0f} MiB"
    text = f"{room} free on the disk mounted at {mount}"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        text += f"; this shell limits files to {limit // 1024} KiB (ulimit -f)"
    return text


def ensure_store(uri: str | None = None) -> None:
    """Make sure a sqlite store exists at the current schema. A new store is built under a
    temporary name and renamed into place once migrated, so a command killed while MLflow creates
    it (SIGKILL, a full disk) leaves no half-made store; one left by an older facegan that holds
    no runs yet is rebuilt. Other stores (a tracking server, postgres) are MLflow's business."""
    uri = uri or tracking_uri()
    if uri in _STORES_READY:
        return
    path = sqlite_file(uri)
    if path is not None:
        _make_store(path)
    _STORES_READY.add(uri)


def _make_store(path: Path) -> None:
    from mlflow.store.db.utils import _get_latest_schema_revision

    from facegan.tasks.common import locks

    head = _get_latest_schema_revision()
    if path.is_file() and _store_state(path)[0] == head:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locks.held(path.with_name(f".{path.name}.lock"), "the MLflow store is being created", wait=True):
            if path.is_file():
                revision, runs = _store_state(path)
                if revision == head:
                    return  # another process made it meanwhile
                if runs:
                    raise StoreError(
                        f"the MLflow store {path} has schema {revision or 'unknown'}, this MLflow expects "
                        f"{head}: back it up, then run `.venv/bin/mlflow db upgrade sqlite:///{path}`"
                    )
                logging.getLogger("facegan").warning(
                    "the MLflow store %s was left half-made by an interrupted command (no runs in it): "
                    "building it again",
                    path,
                )
                for leftover in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
                    leftover.unlink(missing_ok=True)
            for partial in path.parent.glob(f".{path.name}.*.part*"):  # killed creators' temp stores
                partial.unlink(missing_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
            try:
                _build_store(tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.rename(tmp, path)
            finally:
                for leftover in (tmp, Path(f"{tmp}-journal")):
                    leftover.unlink(missing_ok=True)
    except StoreError:
        raise
    except Exception as exc:
        if is_disk_error(exc):
            raise StoreError(
                f"cannot create the MLflow store {path}: the disk is full or a file size "
                f"limit is set ({disk_message(path)})"
            ) from None
        raise


def _build_store(path: Path) -> None:
    """Create and migrate an MLflow sqlite store at `path` (tracking and registry tables)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts = os.environ.get("FACEGAN_MLFLOW_ARTIFACTS") or path.parent / "mlartifacts"
    store = SqlAlchemyStore(f"sqlite:///{path}", Path(artifacts).resolve().as_uri())
    store.engine.dispose()
