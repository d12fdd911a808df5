"""Crop one shard of source images: read, detect, cut squares, resize to every size.

A shard's result is a folder of PNGs (`shard-KEY/<size>/<k>.png`, encoded here so the encoding
runs in parallel with the other shards' detection) and one .npz file (an array per size + a JSON
list of records). Both are atomic and the .npz is written last, so a killed crop resumes from the
shards already done."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facegan.config.crop import CropConfig
from facegan.tasks.common.atomic import atomic_path
from facegan.tasks.cropping.detect import find_faces, read_image
from facegan.tasks.cropping.geometry import cut_square, resize_square, square_box


def crop_options(config: CropConfig) -> dict:
    """The options that decide a crop's pixels, as the fingerprints of the datasets and shard files
    on disk hold them (their layout is kept, so a dataset cropped before stays current):
    --sizes, --largest-only, --margin, the Haar search (--scale-factor, --min-neighbors,
    --min-face), --pad (a second search on the padded image; 0 = off) and --aligned (True: every
    image is one centred face, no detection; None: automatic, see report.py; False: off)."""
    return {
        "sizes": list(config.sizes),
        "largest_only": config.largest_only,
        "margin": config.margin,
        "haar": {
            "scale_factor": config.scale_factor,
            "min_neighbors": config.min_neighbors,
            "min_face": config.min_face,
        },
        "pad": config.pad,
        "aligned": config.aligned,
    }


ALIGNED_CENTRE = "aligned-centre"  # --aligned: the image's centred square
ALIGNED_BOX = "aligned-box"  # automatic: an aligned set's typical face box (Haar found none here)
ALIGNED_MIN_SIDE = 32  # px: --aligned images smaller than this on either side are rejected


@dataclass
class ShardResult:
    records: list[dict]  # one per crop, in order
    crops: dict[int, np.ndarray]  # size -> uint8 (n, size, size, 3) RGB
    images: int = 0
    unreadable: int = 0
    faces_per_image: list[int] | None = None
    png_dir: Path | None = None  # <png_dir>/<size>/<k>.png is crop k at that size
    # one per image of the shard: source, identity, sha256, method (the pass that found its faces,
    # None if none did), faces, width, height, reason (why it gave no crop, else None)
    outcomes: list[dict] | None = None


PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
# fastest zlib level + RLE: on face crops faster to encode than level 1 with the default strategy
# or level 3, and no larger.


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB array as PNG (not atomic: callers write into a folder they rename in)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), PNG_OPTIONS)
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def shard_png_dir(target: Path) -> Path:
    return target.with_suffix("")


def crops_of(
    rgb: np.ndarray,
    boxes: list[tuple[int, int, int, int]],
    config: CropConfig,
    method: str,
    margin: float | None = None,
) -> tuple[list[dict], dict[int, list[np.ndarray]]]:
    """Cut the square around every box of an RGB image and resize it to every size."""
    h, w = rgb.shape[:2]
    margin = config.margin if margin is None else margin
    records, crops = [], {s: [] for s in config.sizes}
    for face_index, (x, y, bw, bh) in enumerate(boxes):
        box = square_box(x, y, bw, bh, w, h, margin)
        square = cut_square(rgb, box)
        for size in config.sizes:
            crops[size].append(resize_square(square, size))
        records.append(
            {
                "face_index": face_index,
                "x": x,
                "y": y,
                "w": bw,
                "h": bh,
                "crop_x0": box.x0,
                "crop_y0": box.y0,
                "crop_side": box.side,
                "padded": box.padded,
                "source_width": w,
                "source_height": h,
                "method": method,
            }
        )
    return records, crops


def centred_box(w: int, h: int) -> tuple[int, int, int, int]:
    """The largest square at the centre of a w×h image, as a box."""
    side = min(w, h)
    return (w - side) // 2, (h - side) // 2, side, side


def crop_image(path: str, config: CropConfig) -> tuple[list[dict], dict[int, list[np.ndarray]], dict]:
    """Crops of one image: (records, crops, outcome). The outcome tells which pass found the faces
    (method), how many, the image's size, and why it gave no crop (reason) if it gave none."""
    bgr, reason = read_image(path)
    if bgr is None:
        return (
            [],
            {s: [] for s in config.sizes},
            {"method": None, "faces": 0, "width": None, "height": None, "reason": reason or "unreadable"},
        )
    h, w = bgr.shape[:2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if config.aligned is True:
        if min(w, h) < ALIGNED_MIN_SIDE:  # a thumbnail or a 1x1 pixel is no face to train on
            return (
                [],
                {s: [] for s in config.sizes},
                {
                    "method": None,
                    "faces": 0,
                    "width": w,
                    "height": h,
                    "reason": f"too small: {w}x{h} px (--aligned needs at least {ALIGNED_MIN_SIDE} px on each side)",
                },
            )
        records, crops = crops_of(rgb, [centred_box(w, h)], config, ALIGNED_CENTRE, margin=0.0)
        return records, crops, {"method": ALIGNED_CENTRE, "faces": 1, "width": w, "height": h, "reason": None}
    boxes, method = find_faces(bgr, config)
    n_faces = len(boxes)
    if config.largest_only:
        boxes = boxes[:1]
    records, crops = crops_of(rgb, boxes, config, method) if boxes else ([], {s: [] for s in config.sizes})
    reason = None
    if not boxes:
        reason = "too small" if max(w, h) < config.min_face else "no face"
    return records, crops, {"method": method, "faces": n_faces, "width": w, "height": h, "reason": reason}


def crop_rows(rows: list[dict], config: CropConfig) -> ShardResult:
    """Crop a list of raw-manifest rows (keys: path, sha256, identity)."""
    records: list[dict] = []
    crops: dict[int, list[np.ndarray]] = {s: [] for s in config.sizes}
    faces_per_image, outcomes, unreadable = [], [], 0
    for row in rows:
        recs, image_crops, outcome = crop_image(row["path"], config)
        outcomes.append(
            {"source": row["path"], "identity": row.get("identity"), "sha256": row.get("sha256"), **outcome}
        )
        if outcome["width"] is None:
            unreadable += 1
            continue
        faces_per_image.append(outcome["faces"])
        for rec in recs:
            rec.update(source=row["path"], source_sha256=row.get("sha256"), identity=row.get("identity"))
        records.extend(recs)
        for size in config.sizes:
            crops[size].extend(image_crops[size])
    stacked = {s: (np.stack(c) if c else np.zeros((0, s, s, 3), np.uint8)) for s, c in crops.items()}
    return ShardResult(records, stacked, len(rows), unreadable, faces_per_image, outcomes=outcomes)


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
    meta = {
        "records": result.records,
        "images": result.images,
        "unreadable": result.unreadable,
        "faces_per_image": result.faces_per_image,
        "outcomes": result.outcomes,
    }
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
    return ShardResult(
        meta["records"],
        crops,
        meta["images"],
        meta["unreadable"],
        meta["faces_per_image"],
        png_dir if png_dir.is_dir() else None,
        meta.get("outcomes"),
    )
