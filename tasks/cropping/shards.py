"""Crop one shard of source images: read, detect, cut squares, resize to every size.

A shard's result is a folder of PNGs (`shard-KEY/<size>/<k>.png`, encoded here so the encoding
runs in parallel with the other shards' detection) and one .npz file (an array per size + a JSON
list of records). Both are atomic and the .npz is written last, so a killed crop resumes from the
shards already done."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.atomic import atomic_path
from tasks.cropping.detect import HaarParams, detect_faces, read_bgr
from tasks.cropping.geometry import cut_square, resize_square, square_box


@dataclass(frozen=True)
class CropParams:
    sizes: tuple[int, ...] = (48, 64, 128)
    largest_only: bool = False
    margin: float = 0.10
    haar: HaarParams = HaarParams()


@dataclass
class ShardResult:
    records: list[dict]            # one per crop, in order
    crops: dict[int, np.ndarray]   # size -> uint8 (n, size, size, 3) RGB
    images: int = 0
    unreadable: int = 0
    faces_per_image: list[int] | None = None
    png_dir: Path | None = None    # <png_dir>/<size>/<k>.png is crop k at that size


PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
# fastest zlib level + RLE: measured here on 128 px crops 0.87 ms and 24 KB per PNG, against
# 1.19 ms / 26 KB at level 1 with the default strategy and 1.54 ms / 25 KB at level 3.


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (not atomic: callers write into a folder they rename in)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_OPTIONS)
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def shard_png_dir(target: Path) -> Path:
    return target.with_suffix("")


def crop_image(path: str, params: CropParams) -> tuple[list[dict], dict[int, list[np.ndarray]], int] | None:
    """Crops of one image; None when the image cannot be read. Returns (records, crops, n_faces)."""
    bgr = read_bgr(path)
    if bgr is None:
        return None
    h, w = bgr.shape[:2]
    boxes = detect_faces(bgr, params.haar, params.largest_only)
    n_faces = len(boxes)
    if params.largest_only:
        boxes = boxes[:1]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    records, crops = [], {s: [] for s in params.sizes}
    for face_index, (x, y, bw, bh) in enumerate(boxes):
        box = square_box(x, y, bw, bh, w, h, params.margin)
        square = cut_square(rgb, box)
        for size in params.sizes:
            crops[size].append(resize_square(square, size))
        records.append({"face_index": face_index, "x": x, "y": y, "w": bw, "h": bh,
                        "crop_x0": box.x0, "crop_y0": box.y0, "crop_side": box.side,
                        "padded": box.padded, "source_width": w, "source_height": h})
    return records, crops, n_faces


def crop_rows(rows: list[dict], params: CropParams) -> ShardResult:
    """Crop a list of raw-manifest rows (keys: path, sha256, identity)."""
    records: list[dict] = []
    crops: dict[int, list[np.ndarray]] = {s: [] for s in params.sizes}
    faces_per_image, unreadable = [], 0
    for row in rows:
        out = crop_image(row["path"], params)
        if out is None:
            unreadable += 1
            continue
        recs, image_crops, n_faces = out
        faces_per_image.append(n_faces)
        for rec in recs:
            rec.update(source=row["path"], source_sha256=row.get("sha256"), identity=row.get("identity"))
        records.extend(recs)
        for size in params.sizes:
            crops[size].extend(image_crops[size])
    stacked = {s: (np.stack(c) if c else np.zeros((0, s, s, 3), np.uint8)) for s, c in crops.items()}
    return ShardResult(records, stacked, len(rows), unreadable, faces_per_image)


def save_shard(result: ShardResult, target: Path) -> Path:
    """The shard's PNG folder (built aside, renamed in), then its .npz: present means done."""
    png_dir = shard_png_dir(target)
    building = png_dir.with_name(png_dir.name + ".part")
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(png_dir, ignore_errors=True)
    for size, faces in result.crops.items():
        (building / str(size)).mkdir(parents=True)
        for k, face in enumerate(faces):
            write_png(building / str(size) / f"{k}.png", face)
    building.rename(png_dir)
    meta = {"records": result.records, "images": result.images, "unreadable": result.unreadable,
            "faces_per_image": result.faces_per_image}
    arrays = {f"size_{s}": a for s, a in result.crops.items()}
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(json.dumps(meta, default=str).encode(), dtype=np.uint8), **arrays)
    return target


def load_shard(path: Path) -> ShardResult:
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        crops = {int(k.split("_")[1]): data[k] for k in data.files if k.startswith("size_")}
    png_dir = shard_png_dir(path)
    return ShardResult(meta["records"], crops, meta["images"], meta["unreadable"], meta["faces_per_image"],
                       png_dir if png_dir.is_dir() else None)


def params_dict(params: CropParams) -> dict:
    return asdict(params)
