"""Checkpoints: runs/<run>/checkpoints/step-NNNNNN.pt (+ best.pt), written atomically.

A checkpoint holds everything needed to continue bit-for-bit: G, D, EMA, both optimizers, step
counters, BEGAN's k_t, the RNG states (python, numpy, torch CPU and CUDA), the config, and the
MLflow run id. (The learning rates are a function of the step and the budget spent.)
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from facegan.config.errors import InputError
from facegan.tasks.common.atomic import atomic_path, clean_partials

_STEP_RE = re.compile(r"^step-(\d+)\.pt$")
BEST = "best.pt"


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step-{step:06d}.pt"


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (temp files of a killed writer are removed first)."""
    if Path(folder).is_dir():
        clean_partials(folder)
    found = step_checkpoints(folder)
    return found[-1][1] if found else None


def save_checkpoint(state: dict, path: Path) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read checkpoint {path}: {exc}") from None


def prune(folder: Path, keep: int) -> None:
    """Keep the `keep` newest step checkpoints (best.pt is never pruned)."""
    for _, path in step_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
