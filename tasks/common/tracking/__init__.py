"""The only code that talks to MLflow; everything else calls these names
(`from facegan.tasks.common import tracking`; tracking.run(...), tracking.get_run(...)).

store: where the MLflow store is and its atomic creation; runs: the experiment, runs and what is
logged to them; registry: the registered generators."""

from facegan.tasks.common.tracking.registry import (
    describe_model_version,
    log_pytorch_model,
    registered_models,
    resolve_model_uri,
)
from facegan.tasks.common.tracking.runs import (
    EXPERIMENT,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARENT_TAG,
    STAGE_TAG,
    TrackedRun,
    download_artifacts,
    experiment,
    find_runs,
    get_run,
    list_artifacts,
    metric_history,
    resume_run,
    run,
    start_run,
)
from facegan.tasks.common.tracking.store import (
    StoreError,
    disk_message,
    ensure_store,
    is_disk_error,
    tracking_uri,
)

__all__ = [
    "EXPERIMENT",
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "PARENT_TAG",
    "STAGE_TAG",
    "StoreError",
    "TrackedRun",
    "describe_model_version",
    "disk_message",
    "download_artifacts",
    "ensure_store",
    "experiment",
    "find_runs",
    "get_run",
    "is_disk_error",
    "list_artifacts",
    "log_pytorch_model",
    "metric_history",
    "registered_models",
    "resolve_model_uri",
    "resume_run",
    "run",
    "start_run",
    "tracking_uri",
]
