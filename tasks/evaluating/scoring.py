"""Scoring sets of faces for the evaluate stage: sampling a trained generator, detection +
encodings per image (cached), the real sets of a dataset, and one Table 1 row's numbers.

Scores (detected + 128-d encoding per image) are cached on disk in blocks keyed by the images'
bytes, the protocol and the detector: FACEGAN_HOME/evaluations/cache/<key>.npz. A rerun (or a run
killed midway) reuses every finished block; the training faces of a dataset are encoded once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facegan.config.errors import InputError, NotFoundError
from facegan.config.gans import GANS
from facegan.evaluation import detection, embeddings, metrics, swd
from facegan.evaluation.real_sets import RealSets, real_sets
from facegan.evaluation.report import budget_text
from facegan.tasks.common.atomic import atomic_path, write_text
from facegan.tasks.common.paths import data_home
from facegan.tasks.cropping.dataset import load_dataset

SCORE_VERSION = "1"
BLOCK = 500
REAL_LABEL = "real control"
DETECTIONS_FILE = "detections.csv"


@dataclass
class Scored:
    label: str
    images: np.ndarray  # uint8 (N, size, size, 3)
    detected: np.ndarray  # bool (N,)
    encodings: np.ndarray  # float32 (N, 128)
    meta: dict


def evaluations_root() -> Path:
    return data_home() / "evaluations"


def _block_key(block: np.ndarray, detector: str) -> str:
    h = hashlib.sha256(f"{SCORE_VERSION}|{detection.PROTOCOL}|{detector}|{block.shape}".encode())
    h.update(np.ascontiguousarray(block).data)
    return h.hexdigest()[:32]


def score_images(
    images: np.ndarray,
    detector: str = "hog",
    workers: int | None = None,
    cache_dir: Path | None = None,
    label: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """(detected bool (N,), encodings float32 (N, 128)) under the protocol, cached per block."""
    images = detection.check_images(images)
    cache_dir = Path(cache_dir) if cache_dir else evaluations_root() / "cache"
    detected, encodings = [], []
    for start in range(0, len(images), BLOCK):
        block = images[start : start + BLOCK]
        path = cache_dir / f"{_block_key(block, detector)}.npz"
        if path.is_file():
            with np.load(path) as cached:
                det, enc = cached["detected"], cached["encodings"]
        else:
            desc = f"score {label} {start + len(block)}/{len(images)}".strip()
            if detector == "hog":
                det, enc = embeddings.detect_and_encode(block, workers, progress=desc)
            else:
                det = detection.detect_faces(block, detector, workers, progress=f"detect {desc}")
                enc = embeddings.encode(block, workers, progress=f"encode {desc}")
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, detected=det, encodings=enc)
        detected.append(det)
        encodings.append(enc)
    if not detected:
        return np.zeros(0, bool), np.zeros((0, embeddings.DIM), np.float32)
    return np.concatenate(detected).astype(bool), np.concatenate(encodings).astype(np.float32)


def dataset_path_of(meta: dict) -> Path:
    """The folder holding the faces.npy a generator was trained on (from its meta)."""
    raw = meta.get("dataset_path")
    if not raw:
        raise NotFoundError(f"run {meta.get('run_id')} does not say which dataset it was trained on: pass --dataset")
    path = Path(raw)
    return path if path.is_absolute() else data_home() / path


def load_real_sets(
    path: Path, n: int, size: int | None = None, fraction: float = 0.2, seed: int = 0, max_training: int | None = None
) -> RealSets:
    """The control / reference / training split (facegan.evaluation.real_sets) of the crop dataset at `path`."""
    faces, manifest = load_dataset(path, size)
    sets = real_sets(faces, manifest, n, fraction, seed, max_training, name=str(path))
    sets.info["dataset_path"] = str(path)
    return sets


def resolve_dataset_arg(dataset: str, size: int) -> Path:
    from facegan.tasks.common.paths import resolve_dataset_path

    return resolve_dataset_path(dataset, size)[1]


def sample_faces(ref: str, n: int, seed: int, device: str = "auto") -> tuple[np.ndarray, dict]:
    """n samples from the generator behind `ref` (EMA weights when the run kept them)."""
    from facegan.tasks.training.device import pick_device
    from facegan.tasks.training.trained_generators import load_generator, sample_images

    G, meta = load_generator(ref, device=pick_device(device))
    images = sample_images(G, meta, n, seed=seed)
    meta = {**meta, "ref": ref}
    return images, meta


def row_labels(metas: list[dict]) -> list[str]:
    """The registry's label (DCGAN, WGAN-GP, BEGAN, Projected GAN), with the recipe when it is
    not the model's default one ("DCGAN (canonical)"), suffixed with the run name (else id) when
    a label appears twice, and then with the checkpoint's file name when one run's checkpoints
    appear twice: labels name the rows' grids and sample folders, which must not collide."""

    def base(meta: dict) -> str:
        gan = GANS.get(meta.get("model"))
        if gan is None:
            return str(meta.get("model"))
        recipe = meta.get("recipe")
        return f"{gan.label} ({recipe})" if gan.recipes and recipe and recipe != gan.default_recipe else gan.label

    labels = [base(m) for m in metas]
    labels = [
        f"{b} [{m.get('run_name') or str(m.get('run_id') or m.get('ref'))[:8]}]" if labels.count(b) > 1 else b
        for b, m in zip(labels, metas)
    ]
    return [
        f"{b} {Path(str(m.get('ref'))).name}" if labels.count(b) > 1 and str(m.get("ref")).endswith(".pt") else b
        for b, m in zip(labels, metas)
    ]


def save_pngs(images: np.ndarray, folder: Path, detected: np.ndarray | None = None) -> Path:
    """Keep a row's images as NNNNNN.png (atomic writes; existing identical files are kept) and,
    given the row's detections, detections.csv: each file and whether the protocol found a face
    in it (the misses are the faces to look at)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [f"{i:06d}.png" for i in range(len(images))]
    for name, image in zip(files, images):
        with atomic_path(folder / name) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    if detected is not None:
        table = pd.DataFrame({"file": files, "face_detected": np.asarray(detected, bool)})
        write_text(folder / DETECTIONS_FILE, table.to_csv(index=False))
    return folder


def row_metrics(scored: Scored, space: metrics.FaceSpace, k: int, reference_images: np.ndarray | None = None) -> dict:
    """Every number of one Table 1 row except the relative-to-control columns: the counts, the
    face-space numbers over the row's detected faces only (facegan.evaluation.metrics.face_space_row: NaN
    and a note below space.min_faces) and, with reference images, the multi-scale SWD against
    them (facegan.evaluation.swd; pixels, every image; equal-size sets, the first min(N, n_reference))."""
    n = len(scored.detected)
    if n <= k:
        raise InputError(f"{scored.label}: {n} images is too few for k={k} precision/recall")
    row = {
        "n": n,
        "detected": int(scored.detected.sum()),
        "budget": budget_text(scored.meta),
        **metrics.face_space_row(scored.encodings, scored.detected, space, k),
    }
    if reference_images is not None:
        m = min(n, len(reference_images))
        row["swd"] = swd.swd(reference_images[:m], scored.images[:m])["swd"]
    return row
