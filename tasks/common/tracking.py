"""The only module that talks to MLflow.

MLflow's fluent API keeps the active run per thread, so everything here goes through an
explicit run id (`MlflowClient`), which is safe from Prefect worker threads. Stages hand
each other run ids, never run objects.

Store: MLFLOW_TRACKING_URI if set, else sqlite:///$FACEGAN_HOME/mlflow.db with artifacts in
$FACEGAN_HOME/mlartifacts (or $FACEGAN_MLFLOW_ARTIFACTS).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from facegan.config.errors import FaceganError
from facegan.tasks.common.paths import data_home

EXPERIMENT = os.environ.get("FACEGAN_EXPERIMENT", "facegan")
PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "facegan.stage"

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


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


def _sqlite_file(uri: str) -> Path | None:
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
        if any(m in str(exc).lower() for m in DISK_MESSAGES):
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
    text = f"{free / 2**30:.1f} GiB free on the disk mounted at {mount}"
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
    path = _sqlite_file(uri)
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


# MLflow 3 opens an experiment on its GenAI "Overview" page unless the experiment says it is for
# model training; with this tag the UI opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
_KIND_CHECKED: set[tuple[str, str]] = set()


def _ensure_kind(client: MlflowClient, exp) -> None:
    key = (tracking_uri(), exp.experiment_id)
    if key in _KIND_CHECKED:
        return
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # also for experiments made before
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    _KIND_CHECKED.add(key)


def _experiment_id(client: MlflowClient, name: str = EXPERIMENT) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        _ensure_kind(client, exp)
        return exp.experiment_id
    artifact_location = None
    if tracking_uri().startswith("sqlite:"):
        folder = os.environ.get("FACEGAN_MLFLOW_ARTIFACTS") or data_home() / "mlartifacts"
        artifact_location = Path(folder).resolve().as_uri()
    try:
        return client.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:  # created concurrently
        exp = client.get_experiment_by_name(name)
        _ensure_kind(client, exp)
        return exp.experiment_id


def experiment():
    """The facegan experiment (created, as a model-training experiment, when missing)."""
    client = _client()
    return client.get_experiment(_experiment_id(client))


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        else:
            text = json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)
            out[name] = text[:6000]
    return out


class TrackedRun:
    """A handle on one MLflow run, usable from any thread."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = _client()

    def log_params(self, params: Mapping[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, v) for k, v in _flat(params).items() if k not in existing]
        for i in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])

    def last_step(self, key: str) -> int:
        """The highest step logged for a metric (0 if none)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_image(self, image, artifact_file: str) -> None:
        """`image`: a PIL image or an HxWx3 uint8 array."""
        self.client.log_image(self.run_id, image, artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_table(self, df, artifact_file: str) -> None:
        self.client.log_table(self.run_id, df, artifact_file)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

    def log_pytorch_model(
        self,
        model,
        artifact_path: str,
        registered_name: str | None = None,
        input_example=None,
        pip_requirements: list[str] | None = None,
    ) -> str | None:
        """Log a torch module with the pytorch flavor; register it when a name is given.
        Returns the registered version (as a string) or None. Giving `pip_requirements` skips
        MLflow's slow requirement inference (a subprocess, ~10 s)."""
        import mlflow.pytorch

        with mlflow.start_run(run_id=self.run_id, nested=True):
            info = mlflow.pytorch.log_model(
                model,
                name=artifact_path,
                input_example=input_example,
                registered_model_name=registered_name,
                pip_requirements=pip_requirements,
            )
        mlflow.end_run() if mlflow.active_run() else None
        version = getattr(info, "registered_model_version", None)
        return str(version) if version is not None else None


def start_run(
    stage: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrackedRun:
    client = _client()
    all_tags = {STAGE_TAG: stage, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(
        _experiment_id(client), run_name=run_name or stage, tags={k: str(v) for k, v in all_tags.items()}
    )
    tracked = TrackedRun(run.info.run_id)
    if params:
        tracked.log_params(params)
    return tracked


def resume_run(run_id: str) -> TrackedRun:
    client = _client()
    client.update_run(run_id, status="RUNNING")
    return TrackedRun(run_id)


@contextlib.contextmanager
def run(
    stage: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Iterator[TrackedRun]:
    """Start a run; mark it FINISHED, KILLED when interrupted (Ctrl-C), or FAILED on an exception."""
    tracked = start_run(stage, run_name, params, parent_run_id, tags)
    try:
        yield tracked
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        tracked.finish(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        tracked.finish(RunStatus.to_string(RunStatus.FAILED))
        raise
    tracked.finish()


def get_run(run_id: str):
    return _client().get_run(run_id)


def find_runs(stage: str | None = None, filter_string: str = "", max_results: int = 1000):
    client = _client()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    clauses = [c for c in (filter_string, f"tags.`{STAGE_TAG}` = '{stage}'" if stage else "") if c]
    return client.search_runs([exp.experiment_id], " and ".join(clauses), max_results=max_results)


def metric_history(run_id: str, key: str):
    return _client().get_metric_history(run_id, key)


def download_artifacts(run_id: str, path: str, dst: str | Path | None = None) -> Path:
    dst = Path(dst or tempfile.mkdtemp(prefix="facegan-artifacts-"))
    return Path(_client().download_artifacts(run_id, path, str(dst)))


def list_artifacts(run_id: str, path: str | None = None) -> list[str]:
    return [a.path for a in _client().list_artifacts(run_id, path)]


def resolve_model_uri(model_uri: str) -> tuple[str | None, str]:
    """For `models:/name/version` return (source run id, uri)."""
    if model_uri.startswith("models:/"):
        name, _, version = model_uri[len("models:/") :].partition("/")
        client = _client()
        if version in ("", "latest"):
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise LookupError(f"no registered model {name!r}")
            mv = max(versions, key=lambda v: int(v.version))
        else:
            mv = client.get_model_version(name, version)
        return mv.run_id, f"models:/{name}/{mv.version}"
    return None, model_uri


def registered_models(prefix: str = "facegan-") -> list[dict]:
    """Every version of the registered models named `prefix`*: name, version, run_id,
    created (ms), newest first."""
    versions = _client().search_model_versions(f"name LIKE '{prefix}%'")
    rows = [
        {"name": v.name, "version": int(v.version), "run_id": v.run_id, "created": v.creation_timestamp}
        for v in versions
    ]
    return sorted(rows, key=lambda r: (r["created"] or 0, r["version"]), reverse=True)


def describe_model_version(name: str, version: str, description: str, tags: Mapping[str, Any]) -> None:
    """Give one registered model version a description and tags (what tells versions apart in
    the registry: model, size, kimg, dataset)."""
    client = _client()
    client.update_model_version(name, str(version), description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
