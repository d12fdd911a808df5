"""Checkpoints: runs/<run>/checkpoints/step-NNNNNN.pt (+ best.pt), written atomically.

A checkpoint holds everything needed to continue bit-for-bit: G, D, EMA, both optimizers, step
counters, BEGAN's k_t, the RNG states (python, numpy, torch CPU and CUDA), the config, and the
MLflow run id. (The learning rates are a function of the step and the budget spent.)
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from facegan.config.errors import InputError
from facegan.config.train import TrainConfig
from facegan.tasks.common.atomic import atomic_path, clean_partials
from facegan.tasks.training.updates import Parts

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


@dataclass
class Counters:
    """Where a run is; saved in every checkpoint (as top-level keys) and returned at the end."""

    step: int = 0  # generator updates done
    batches: int = 0  # real batches drawn (d_steps per step)
    cpu_seconds: float = 0.0  # CPU time of the updates, all ranks, cumulative over resumes
    wall_seconds: float = 0.0  # wall-clock time of the updates (mean over ranks), cumulative over resumes
    best_detection_rate: float | None = None
    best_step: int | None = None


def state_dict(p: Parts, cfg: TrainConfig, meta: dict, counters: Counters) -> dict:
    return {
        "config": cfg.model_dump(mode="json"),
        "meta": meta,
        **asdict(counters),
        "G": p.G.state_dict(),
        "D": p.D.state_dict(),
        "ema": p.ema.model.state_dict() if p.ema else None,
        "opt_g": p.opt_g.state_dict(),
        "opt_d": p.opt_d.state_dict(),
        "k_t": p.equilibrium.k if p.equilibrium else None,
        "rng": rng_state(),
    }


def load_state(p: Parts, state: dict) -> Counters:
    """Restore a checkpoint into `p`; returns its counters."""
    p.G.load_state_dict(state["G"])
    p.D.load_state_dict(state["D"])
    if p.ema is not None:
        p.ema.model.load_state_dict(state["ema"] if state.get("ema") is not None else state["G"])
        p.ema.stale = True
    for name in ("opt_g", "opt_d"):
        getattr(p, name).load_state_dict(state[name])
    if p.equilibrium is not None and state.get("k_t") is not None:
        p.equilibrium.k = state["k_t"]
    set_rng_state(state["rng"])
    return Counters(**{f.name: state[f.name] for f in fields(Counters) if f.name in state})  # older: fewer


def save_torch_file(state: dict, path: Path) -> Path:
    """torch.save to `path` atomically (temp file + rename), through a Python file: torch's own
    file writer turns a full disk into "iostream error" / "unexpected pos"; through Python its
    OSError (ENOSPC, EFBIG) survives, and names the file. Checkpoints and generator files."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        try:
            torch.save(state, fh)
        except RuntimeError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError):
                raise OSError(cause.errno, cause.strerror, str(path)) from exc
            raise
    return Path(path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read checkpoint {path}: {exc}") from None


def prune(folder: Path, keep: int, every: int) -> None:
    """Keep the `keep` newest checkpoints of the step interval `every`, and the newest one of all
    (best.pt is never pruned). A checkpoint off the interval (one written because time had passed,
    or a final one) stands in for the work since the last interval one: it does not push interval
    checkpoints out, and goes when a newer checkpoint is written."""
    found = step_checkpoints(folder)
    on_interval = [path for step, path in found if step % every == 0]
    kept = set(on_interval[-keep:]) | {path for _, path in found[-1:]}
    for _, path in found:
        if path not in kept:
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
