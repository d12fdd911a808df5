"""The model registry: logging a generator with the pytorch flavor (registered as
facegan-<model>-<size>), finding registered versions, describing them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facegan.tasks.common.tracking.store import _client


def log_pytorch_model(
    run_id: str,
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

    with mlflow.start_run(run_id=run_id, nested=True):
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
