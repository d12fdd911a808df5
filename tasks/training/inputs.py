"""The training run's input, checked once by one function for the CLI's fast preflight
(flows/preflight.py) and for the train task (lifecycle.prepare_run): the dataset resolves, its
faces.npy is a uint8 (N, size, size, 3) array (read from the header alone), it holds crops, and
enough of them for one batch per process. Light: numpy, no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.config.errors import InputError
from facegan.tasks.common.paths import FACES_ARRAY, resolve_dataset_path


@dataclass(frozen=True)
class TrainingSet:
    """A checked training dataset: its name, the folder holding faces.npy, its number of crops."""

    name: str
    path: Path
    crops: int


def open_faces(path: Path, size: int, mmap: bool = True) -> np.ndarray:
    """faces.npy of a dataset folder, checked against the declared size (memory-mapped: only the
    header is read until the pixels are used)."""
    try:
        faces = np.load(path / FACES_ARRAY, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path / FACES_ARRAY}: {exc}") from None
    if faces.ndim != 4 or faces.shape[1:] != (size, size, 3) or faces.dtype != np.uint8:
        raise InputError(
            f"{path / FACES_ARRAY} holds {faces.dtype} {faces.shape}, expected uint8 "
            f"(N, {size}, {size}, 3): wrong --size or not a facegan dataset"
        )
    return faces


def check_training_set(config) -> TrainingSet:
    """The dataset a TrainConfig trains on (--dataset, --size), checked against --batch-size x --nproc
    and --clusters."""
    name, path = resolve_dataset_path(config.dataset, config.size)
    crops = len(open_faces(path, config.size))
    if crops == 0:
        raise InputError(f"dataset {name!r} ({config.size} px) is empty: no crops to train on")
    if config.batch_size * config.nproc > crops:
        per = f" x {config.nproc} processes" if config.nproc > 1 else ""
        raise InputError(
            f"--batch-size {config.batch_size}{per} is larger than dataset {name!r} at "
            f"{config.size} px ({crops} crops): lower --batch-size or crop more images"
        )
    if config.clusters > crops:
        raise InputError(
            f"--clusters {config.clusters}: dataset {name!r} at {config.size} px has {crops} crops, "
            "too few for that many clusters"
        )
    return TrainingSet(name, path, crops)
