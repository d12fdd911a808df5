"""`facegan generate`: N faces from a trained generator written as PNGs plus one grid.

Generated in batches (memory bounded by one batch, a progress bar per batch); the grid shows the
first GRID_MAX faces. The output folder is never shared by two requests (tasks/common/outputs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid
from tqdm import tqdm

from facegan.tasks.common import outputs
from facegan.tasks.common.atomic import atomic_path
from facegan.tasks.common.paths import data_home
from facegan.tasks.training.device import pick_device
from facegan.tasks.training.trained_generators import iter_samples, load_generator

GRID_MAX = 100
BATCH = 250


def _slug(ref: str) -> str:
    ref = ref.strip().rstrip("/")
    if ref.startswith("models:/"):
        ref = ref[len("models:/") :]
    elif ref.endswith(".pt"):
        ref = f"{Path(ref).parent.parent.name}-{Path(ref).stem}"
    else:
        ref = ref[:12]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "generator"


def _save_png(array, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def request_of(ref: str, n: int, seed: int) -> dict:
    return {"run": str(ref).strip(), "n": n, "seed": seed}


def output_folder(ref: str, n: int, seed: int, out: Path | str | None) -> Path:
    """--out, checked (new, empty, or holding this same request); by default
    $FACEGAN_HOME/generated/<run>-seed<seed> (-2, -3, ... when that one holds other faces)."""
    request = request_of(ref, n, seed)
    if out:
        return outputs.check_folder(Path(out).expanduser(), request)
    return outputs.free_folder(data_home() / "generated" / f"{_slug(ref)}-seed{seed}", request)


def write_faces(
    ref: str,
    n: int,
    seed: int = 0,
    out: Path | str | None = None,
    device: str = "cpu",
    nrow: int = 10,
    progress: bool = True,
) -> dict:
    folder = output_folder(ref, n, seed, out)  # refused before the generator is even loaded
    dev = pick_device(device)
    G, meta = load_generator(ref, device=dev)
    outputs.claim(folder, request_of(ref, n, seed))
    grid_faces: list[np.ndarray] = []
    written = 0
    with tqdm(total=n, desc="generating", unit="face", disable=not progress, mininterval=1.0) as bar:
        for batch in iter_samples(G, meta, n, seed=seed, batch_size=BATCH):
            for image in batch:
                _save_png(image, folder / f"{written:06d}.png")
                written += 1
            if len(grid_faces) < GRID_MAX:
                grid_faces.extend(batch[: GRID_MAX - len(grid_faces)])
            bar.update(len(batch))
    shown = np.stack(grid_faces)
    grid = make_grid(torch.from_numpy(shown).permute(0, 3, 1, 2), nrow=min(nrow, len(shown)), padding=2)
    _save_png(grid.permute(1, 2, 0).numpy(), folder / "grid.png")
    return {
        "out": str(folder),
        "n": n,
        "model": meta["model"],
        "size": meta["size"],
        "grid_faces": len(shown),
        "run_id": meta.get("run_id"),
        "model_uri": meta.get("model_uri"),
    }
