"""`facegan generate`: N faces from a trained generator written as PNGs plus one grid."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from tasks.atomic import atomic_path
from tasks.paths import data_home
from tasks.training.device import pick_device
from tasks.training.generator import load_generator, sample_images


def _slug(ref: str) -> str:
    ref = ref.strip().rstrip("/")
    if ref.startswith("models:/"):
        ref = ref[len("models:/"):]
    elif ref.endswith(".pt"):
        ref = f"{Path(ref).parent.parent.name}-{Path(ref).stem}"
    else:
        ref = ref[:12]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "generator"


def _save_png(array, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_faces(ref: str, n: int, seed: int = 0, out: Path | str | None = None, device: str = "cpu",
                nrow: int = 10) -> dict:
    dev = pick_device(device)
    G, meta = load_generator(ref, device=dev)
    images = sample_images(G, meta, n, seed=seed)
    out = Path(out) if out else data_home() / "generated" / f"{_slug(ref)}-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        _save_png(image, out / f"{i:06d}.png")
    grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=min(nrow, n), padding=2)
    _save_png(grid.permute(1, 2, 0).numpy(), out / "grid.png")
    return {"out": str(out), "n": n, "model": meta["model"], "size": meta["size"],
            "run_id": meta.get("run_id")}
