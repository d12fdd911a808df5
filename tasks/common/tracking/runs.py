"""Runs: the facegan experiment, starting, resuming and finishing runs, finding them, and a
TrackedRun handle that logs params, metrics, tags and artifacts to one run.

MLflow's fluent API keeps the active run per thread, so everything here goes through an explicit
run id (`MlflowClient`), which is safe from Prefect worker threads. Stages hand each other run ids,
never run objects."""

from __future__ import annotations

import contextlib
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

from facegan.config.errors import as_interrupt
from facegan.tasks.common.paths import data_home
from facegan.tasks.common.tracking.owners import ENDED_TAG, end_orphans, owner_tags
from facegan.tasks.common.tracking.registry import log_pytorch_model
from facegan.tasks.common.tracking.signals import uninterrupted
from facegan.tasks.common.tracking.store import _client, tracking_uri

log = logging.getLogger("facegan.tracking")
EXPERIMENT = os.environ.get("FACEGAN_EXPERIMENT", "facegan")
PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "facegan.stage"


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
    """A handle on one MLflow run, usable from any thread. Every write takes a Ctrl-C or SIGTERM
    after it returns (tracking/signals.py): artifacts too, as MLflow records them in run tags."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = _client()

    @uninterrupted
    def log_params(self, params: Mapping[str, Any]) -> None:
        existing = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, v) for k, v in _flat(params).items() if k not in existing]
        for i in range(0, len(fresh), 100):
            self.client.log_batch(self.run_id, params=fresh[i : i + 100])

    @uninterrupted
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        ts = int(time.time() * 1000)
        batch = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])

    def last_step(self, key: str) -> int:
        """The highest step logged for a metric (0 if none)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)

    @uninterrupted
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    @uninterrupted
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    @uninterrupted
    def log_dict(self, data: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)

    @uninterrupted
    def log_image(self, image, artifact_file: str) -> None:
        """`image`: a PIL image or an HxWx3 uint8 array."""
        self.client.log_image(self.run_id, image, artifact_file)

    @uninterrupted
    def log_figure(self, figure, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    @uninterrupted
    def log_table(self, df, artifact_file: str) -> None:
        self.client.log_table(self.run_id, df, artifact_file)

    @uninterrupted
    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

    def finish_after_error(self, status: str) -> None:
        """finish(status) while an error propagates: a store that cannot take the status (the
        disk that just filled up holds it too) must not replace that error with its own. The
        run is then left RUNNING, and the next command marks it KILLED (end_orphans)."""
        try:
            self.finish(status)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised, the first error is the one to report
            log.debug("could not mark MLflow run %s %s: %s", self.run_id, status, exc)

    def log_pytorch_model(self, model, artifact_path: str, **options: Any) -> str | None:
        """tracking.registry.log_pytorch_model for this run: the registered version, or None."""
        return log_pytorch_model(self.run_id, model, artifact_path, **options)


def start_run(
    stage: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> TrackedRun:
    client = _client()
    all_tags = {STAGE_TAG: stage, **owner_tags(), **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    experiment_id = _experiment_id(client)
    end_orphans(client, experiment_id)
    run = client.create_run(experiment_id, run_name=run_name or stage, tags={k: str(v) for k, v in all_tags.items()})
    tracked = TrackedRun(run.info.run_id)
    if params:
        tracked.log_params(params)
    return tracked


def resume_run(run_id: str) -> TrackedRun:
    client = _client()
    run = client.get_run(run_id)
    for key, value in owner_tags().items():  # this process owns it now
        client.set_tag(run_id, key, value)
    if ENDED_TAG in run.data.tags:  # ended as an orphan before: running again
        client.delete_tag(run_id, ENDED_TAG)
    client.update_run(run_id, status="RUNNING")
    end_orphans(client, run.info.experiment_id)
    return TrackedRun(run_id)


@contextlib.contextmanager
def run(stage: str, **options: Any) -> Iterator[TrackedRun]:
    """start_run(stage, **options) as a context: the run is marked FINISHED, KILLED when
    interrupted (Ctrl-C), or FAILED on an exception."""
    tracked = start_run(stage, **options)
    try:
        yield tracked
    except BaseException as exc:  # Ctrl-C or SIGTERM (Prefect's TerminationSignal in a flow): KILLED
        status = RunStatus.FAILED if as_interrupt(exc) is None else RunStatus.KILLED
        tracked.finish_after_error(RunStatus.to_string(status))
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
