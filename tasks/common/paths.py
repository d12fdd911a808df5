"""Where facegan keeps its data: FACEGAN_HOME (default ./facegan-data).

raw/<name>/                 images (or an index of imported files) + manifest.parquet
datasets/<name>/<size>/     PNG crops + faces.npy (uint8 N×H×W×3) + manifest.parquet
runs/<run>/                 training checkpoints, samples
mlflow.db                   MLflow tracking store (unless MLFLOW_TRACKING_URI is set)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facegan.config.base import check_name
from facegan.config.errors import NotFoundError

MANIFEST = "manifest.parquet"
FACES_ARRAY = "faces.npy"
RUN_FILE = "run.json"  # runs/<run>/run.json: the MLflow run id of a training run and its meta


def data_home() -> Path:
    return Path(os.environ.get("FACEGAN_HOME", "facegan-data")).expanduser().resolve()


def raw_root() -> Path:
    return data_home() / "raw"


def raw_dir(name: str) -> Path:
    return raw_root() / check_name(name)


def datasets_root() -> Path:
    return data_home() / "datasets"


def dataset_dir(name: str, size: int | None = None) -> Path:
    path = datasets_root() / check_name(name)
    return path / str(size) if size is not None else path


def runs_root() -> Path:
    return data_home() / "runs"


def named_run_id(name: str) -> str | None:
    """The MLflow run id of the training run called `name` (`facegan train --name`) in this home,
    or None when there is none."""
    if not name or "/" in name or name.startswith("."):
        return None
    try:
        run_id = json.loads((runs_root() / name / RUN_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run_id if isinstance(run_id, str) and run_id else None


def run_names() -> list[str]:
    """Training runs of this home by name, the most recent last."""
    found = []
    for path in runs_root().glob(f"*/{RUN_FILE}"):
        try:
            found.append((path.stat().st_mtime, path.parent.name))
        except OSError:  # removed meanwhile
            continue
    return [name for _, name in sorted(found) if not name.startswith(".")]


def _complete_sets(root: Path, marker: str) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and list(p.glob(marker))]
    return sorted(found, key=lambda p: max(m.stat().st_mtime for m in p.glob(marker)))


def resolve_raw(name: str | None) -> str:
    """The raw set called `name`, or the only / most recent one when name is None."""
    sets = _complete_sets(raw_root(), MANIFEST)
    if name is None:
        if not sets:
            raise NotFoundError(f"no raw image sets under {raw_root()}: run `facegan acquire` first")
        return sets[-1].name
    if not (raw_dir(name) / MANIFEST).is_file():
        known = ", ".join(p.name for p in sets) or "none"
        raise NotFoundError(f"unknown raw set {name!r} (known: {known})")
    return name


def resolve_dataset(name: str | None, size: int | None = None) -> str:
    """The crop dataset called `name`, or the only / most recent one when name is None."""
    marker = f"{size}/{MANIFEST}" if size else f"*/{MANIFEST}"
    sets = _complete_sets(datasets_root(), marker)
    if name is None:
        if not sets:
            raise NotFoundError(f"no crop datasets under {datasets_root()}: run `facegan crop` first")
        return sets[-1].name
    if not list(dataset_dir(name).glob(marker)):
        known = ", ".join(p.name for p in sets) or "none"
        raise NotFoundError(
            f"unknown crop dataset {name!r}" + (f" at size {size}" if size else "") + f" (known: {known})"
        )
    return name


def resolve_dataset_path(dataset: str | None, size: int) -> tuple[str, Path]:
    """(dataset name, folder holding faces.npy) for a dataset name, a path, or None (latest)."""
    if dataset and ("/" in dataset or dataset.startswith(".") or Path(dataset).is_absolute()):
        path = Path(dataset).expanduser().resolve()
        if not path.exists():
            raise NotFoundError(f"dataset path {path} does not exist")
        if not (path / FACES_ARRAY).is_file() and (path / str(size)).is_dir():
            path = path / str(size)
        if not (path / FACES_ARRAY).is_file():
            raise NotFoundError(f"no crops in {path} ({FACES_ARRAY} missing): run `facegan crop` first")
        name = path.parent.name if path.name == str(size) else path.name
        return name, path
    name = resolve_dataset(dataset, size)
    path = dataset_dir(name, size)
    if not (path / FACES_ARRAY).is_file():
        raise NotFoundError(f"no crops in {path} ({FACES_ARRAY} missing): run `facegan crop` first")
    return name, path
