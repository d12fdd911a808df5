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
from PIL import Image

from evaluation import detection, embeddings, metrics, swd
from evaluation.real_sets import RealSets, real_sets
from evaluation.report import budget_text
from tasks.atomic import atomic_path
from tasks.cropping.dataset import load_dataset
from config.errors import InputError, NotFoundError
from config.gans import GANS
from tasks.paths import data_home

SCORE_VERSION = "1"
BLOCK = 500
MODEL_LABELS = {name: gan.label for name, gan in GANS.items()}
REAL_LABEL = "real control"


@dataclass
class Scored:
    label: str
    images: np.ndarray        # uint8 (N, size, size, 3)
    detected: np.ndarray      # bool (N,)
    encodings: np.ndarray     # float32 (N, 128)
    meta: dict


def evaluations_root() -> Path:
    return data_home() / "evaluations"


def _block_key(block: np.ndarray, detector: str) -> str:
    h = hashlib.sha256(f"{SCORE_VERSION}|{detection.PROTOCOL}|{detector}|{block.shape}".encode())
    h.update(np.ascontiguousarray(block).data)
    return h.hexdigest()[:32]


def score_images(images: np.ndarray, detector: str = "hog", workers: int | None = None,
                 cache_dir: Path | None = None, label: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(detected bool (N,), encodings float32 (N, 128)) under the protocol, cached per block."""
    images = detection.check_images(images)
    cache_dir = Path(cache_dir) if cache_dir else evaluations_root() / "cache"
    detected, encodings = [], []
    for start in range(0, len(images), BLOCK):
        block = images[start:start + BLOCK]
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
        raise NotFoundError(f"run {meta.get('run_id')} does not say which dataset it was trained on: "
                            "pass --dataset")
    path = Path(raw)
    return path if path.is_absolute() else data_home() / path


def load_real_sets(path: Path, n: int, size: int | None = None, fraction: float = 0.2, seed: int = 0,
                   max_training: int | None = None) -> RealSets:
    """The control / reference / training split (evaluation.real_sets) of the crop dataset at `path`."""
    faces, manifest = load_dataset(path, size)
    sets = real_sets(faces, manifest, n, fraction, seed, max_training, name=str(path))
    sets.info["dataset_path"] = str(path)
    return sets


def resolve_dataset_arg(dataset: str, size: int) -> Path:
    from tasks.paths import resolve_dataset_path

    return resolve_dataset_path(dataset, size)[1]


def sample_faces(ref: str, n: int, seed: int, device: str = "auto") -> tuple[np.ndarray, dict]:
    """n samples from the generator behind `ref` (EMA weights when the run kept them)."""
    from tasks.training.device import pick_device
    from tasks.training.trained_generators import load_generator, sample_images

    G, meta = load_generator(ref, device=pick_device(device))
    images = sample_images(G, meta, n, seed=seed)
    meta = {**meta, "ref": ref}
    return images, meta


def row_labels(metas: list[dict]) -> list[str]:
    """DCGAN (the default recipe) / DCGAN (canonical) / WGAN-GP / BEGAN, suffixed with the run
    name (else id) when a label appears twice."""
    def base(meta: dict) -> str:
        label = MODEL_LABELS.get(meta.get("model"), str(meta.get("model")))
        canonical = meta.get("model") == "dcgan" and meta.get("recipe") == "canonical"
        return f"{label} (canonical)" if canonical else label

    labels = [base(m) for m in metas]
    return [f"{b} [{m.get('run_name') or str(m.get('run_id') or m.get('ref'))[:8]}]" if labels.count(b) > 1 else b
            for b, m in zip(labels, metas)]


def save_pngs(images: np.ndarray, folder: Path) -> Path:
    """Keep a row's images as NNNNNN.png (atomic writes; existing identical files are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        target = folder / f"{i:06d}.png"
        with atomic_path(target) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    return folder


def row_metrics(scored: Scored, reference_enc: np.ndarray, training_enc: np.ndarray,
                memo_threshold: float, k: int, reference_images: np.ndarray | None = None) -> dict:
    """Every number of one Table 1 row except the relative-to-control columns. With reference
    images, also the multi-scale SWD against them (evaluation.swd; equal-size sets, the first
    min(N, n_reference) of each)."""
    n = len(scored.detected)
    if n <= k:
        raise InputError(f"{scored.label}: {n} images is too few for k={k} precision/recall")
    nearest = metrics.nearest_distances(scored.encodings, training_enc)
    precision, recall = metrics.precision_recall(reference_enc, scored.encodings, k)
    row = {"n": n, "detected": int(scored.detected.sum()),
           "memorised": metrics.memorised_share(nearest, memo_threshold),
           "nearest_mean": float(nearest.mean()),
           "frechet": metrics.frechet_distance(scored.encodings, reference_enc),
           "precision": precision, "recall": recall, "budget": budget_text(scored.meta)}
    if reference_images is not None:
        m = min(n, len(reference_images))
        row["swd"] = swd.swd(reference_images[:m], scored.images[:m])["swd"]
    return row

