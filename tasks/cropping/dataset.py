"""Assemble cropped shards into one dataset per size:

    datasets/<name>/<size>/NNNNNN.png      crops for people to look at
    datasets/<name>/<size>/faces.npy       uint8 N×size×size×3 RGB, row i == NNNNNN.png
    datasets/<name>/<size>/manifest.parquet  where every crop came from
    datasets/<name>/<size>/meta.json       fingerprint + stats (a rerun with the same one is skipped)

Each size is built in a staging folder and swapped in with renames, so an interrupted or failed
crop never leaves a half-written dataset where a good one was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.utils import make_grid

from facegan.config.errors import InputError, NotFoundError
from facegan.tasks.common.atomic import write_npy, write_parquet, write_text
from facegan.tasks.common.paths import FACES_ARRAY, MANIFEST
from facegan.tasks.cropping.shards import ShardResult, write_png

META = "meta.json"
CONTACT_SHEET = "contact_sheet.png"
NO_FACE_SHEET = "no_face_sheet.png"  # the images that gave no crop, so the user sees what was lost
REJECTED = "rejected.parquet"  # every input that gave no crop, with the reason


def merge_shards(
    shards: list[ShardResult], sizes: list[int], dedupe: bool
) -> tuple[pd.DataFrame, dict[int, np.ndarray], int, list[tuple[Path | None, int]]]:
    """Concatenate shards in order; drop exact-duplicate crops (identical pixels at the largest size).

    Also returns, per kept crop, where its shard wrote its PNGs: (png_dir or None, index in shard)."""
    records = [r for s in shards for r in s.records]
    origins = [(s.png_dir, k) for s in shards for k in range(len(s.records))]
    arrays = {
        size: np.concatenate([s.crops[size] for s in shards]) if shards else np.zeros((0, size, size, 3), np.uint8)
        for size in sizes
    }
    manifest = pd.DataFrame.from_records(records)
    if manifest.empty:
        return manifest, arrays, 0, []
    largest = arrays[max(sizes)]
    manifest["crop_sha256"] = [hashlib.sha256(a.tobytes()).hexdigest() for a in largest]
    keep = ~manifest["crop_sha256"].duplicated() if dedupe else pd.Series(True, index=manifest.index)
    dropped = int((~keep).sum())
    manifest = manifest[keep.values].reset_index(drop=True)
    arrays = {size: a[keep.values] for size, a in arrays.items()}
    origins = [o for o, k in zip(origins, keep.values) if k]
    return manifest, arrays, dropped, origins


def contact_sheet(faces: np.ndarray, n: int = 64, seed: int = 0) -> np.ndarray:
    """A grid (uint8 H×W×3) of up to n random crops."""
    if len(faces) == 0:
        return np.zeros((8, 8, 3), np.uint8)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(faces), size=min(n, len(faces)), replace=False))
    tensor = torch.from_numpy(faces[pick]).permute(0, 3, 1, 2)
    grid = make_grid(tensor, nrow=8, padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy().copy()


def thumbnails_sheet(images: list[np.ndarray], tile: int = 96) -> np.ndarray:
    """A grid (uint8 RGB) of whole images, each fitted into a tile×tile square (aspect kept, grey
    around), 8 per row."""
    import cv2

    if not images:
        return np.zeros((8, 8, 3), np.uint8)
    tiles = []
    for rgb in images:
        h, w = rgb.shape[:2]
        scale = tile / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        out = np.full((tile, tile, 3), 128, np.uint8)
        y0, x0 = (tile - nh) // 2, (tile - nw) // 2
        out[y0 : y0 + nh, x0 : x0 + nw] = small
        tiles.append(out)
    grid = make_grid(torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2), nrow=8, padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy().copy()


def _place_png(path: Path, rgb: np.ndarray, shard_png: Path | None) -> None:
    """Hard-link the PNG the shard already encoded (same pixels), else encode it here."""
    if shard_png is not None:
        try:
            os.link(shard_png, path)
            return
        except OSError:  # no hard links on this filesystem, or the shard's PNG is gone
            pass
    write_png(path, rgb)


def write_size(
    folder: Path,
    size: int,
    manifest: pd.DataFrame,
    faces: np.ndarray,
    meta: dict,
    workers: int = 2,
    seed: int = 0,
    origins: list[tuple[Path | None, int]] | None = None,
    rejected: pd.DataFrame | None = None,
    no_face_sheet: np.ndarray | None = None,
) -> Path:
    """Write one size's dataset into `folder` (a fresh staging folder, swapped in whole later)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = manifest.copy()
    table.insert(0, "file", [f"{i:06d}.png" for i in range(len(table))])
    table["size"] = size
    origins = origins or [(None, 0)] * len(table)
    sources = [d / str(size) / f"{k}.png" if d is not None else None for d, k in origins]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(lambda i: _place_png(folder / table["file"].iat[i], faces[i], sources[i]), range(len(table))))
    write_npy(faces, folder / FACES_ARRAY)
    write_parquet(table, folder / MANIFEST)
    write_png(folder / CONTACT_SHEET, contact_sheet(faces, seed=seed))
    if rejected is not None:
        write_parquet(rejected, folder / REJECTED)
    if no_face_sheet is not None:
        write_png(folder / NO_FACE_SHEET, no_face_sheet)
    write_text(folder / META, json.dumps({**meta, "size": size, "crops": int(len(table))}, indent=2, default=str))
    return folder


def swap_in(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with renames (old data removed only after the new is in place)."""
    trash = target.with_name(f".trash-{target.name}")
    if trash.exists():
        shutil.rmtree(trash)
    if target.exists():
        target.rename(trash)
    staging.rename(target)
    if trash.exists():
        shutil.rmtree(trash)


def recover(dataset_root: Path) -> None:
    """Undo what a crop killed mid-swap left: a `.trash-<size>` whose `<size>` is missing goes back."""
    if not dataset_root.is_dir():
        return
    for trash in dataset_root.glob(".trash-*"):
        target = trash.with_name(trash.name.removeprefix(".trash-"))
        if target.exists():
            shutil.rmtree(trash)
        else:
            trash.rename(target)


def read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / META).read_text())
    except (OSError, ValueError):
        return None


def load_dataset(folder: Path, size: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """(faces, manifest) of one crop dataset folder: faces.npy (memory-mapped, uint8 N x H x W x 3)
    and its manifest (an index-only frame when there is none), checked against each other."""
    folder = Path(folder)
    if not (folder / FACES_ARRAY).is_file():
        raise NotFoundError(
            f"no crops in {folder} ({FACES_ARRAY} missing): the real control needs the dataset the model was trained on"
        )
    faces = np.load(folder / FACES_ARRAY, mmap_mode="r")
    manifest = (
        pd.read_parquet(folder / MANIFEST) if (folder / MANIFEST).is_file() else pd.DataFrame(index=range(len(faces)))
    )
    if len(manifest) != len(faces):
        raise InputError(f"{folder}: manifest has {len(manifest)} rows but {FACES_ARRAY} {len(faces)} crops")
    if size is not None and faces.shape[1:] != (size, size, 3):
        raise InputError(f"{folder / FACES_ARRAY} holds {faces.shape[1:]} images, expected {size}x{size}x3")
    return faces, manifest
