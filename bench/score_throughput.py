"""Scoring throughput of the evaluate stage on 1000 real 64 px face crops.

Measured in one run on the same images:
  (a) baseline: detection in one process (a plain loop over face_recognition, as the seed did)
  (b) facegan detection: facegan.evaluation.detection.detect_faces over all cores (process pool,
      including the pool's start-up)
  (c) facegan detection + 128-d encodings: facegan.evaluation.embeddings.detect_and_encode (what
      `facegan evaluate` runs for every image; its on-disk cache is not used here)
Goal on a 2-core CPU: (b) <= 30 s and (c) <= 120 s for 1000 images.

Crops: faces.npy of a crop dataset (--dataset PATH, a folder holding faces.npy, or NAME in
$FACEGAN_HOME), else made on the fly from the LFW archive in ../shared/data (Haar crops, as
`facegan crop` makes them). Prints `ratio: X.XX` ((a) / (b)) and, last,
`seconds: detection X, with encodings Y`.

    .venv/bin/python bench/score_throughput.py [--n 1000] [--dataset PATH|NAME] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def crops_from_lfw(n: int, size: int = 64) -> np.ndarray:
    """n crops of `size` px (largest face per photo) of the first LFW photos, made by the crop stage's
    own function (Haar, 10% margin, square, INTER_AREA)."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.shards import crop_image

    shared = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
    tgz = shared / "archives" / "lfw-deepfunneled.tgz"
    if not tgz.is_file():
        sys.exit(f"score_throughput: {tgz} not found; pass --dataset")
    config = CropConfig(sizes=[size], largest_only=True)
    crops: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if len(crops) >= n:
                break
            if member.isfile() and member.name.endswith(".jpg"):
                tar.extract(member, tmp, filter="data")
                out = crop_image(str(Path(tmp) / member.name), config)
                crops.extend(out[1][size] if out else [])
    return np.stack(crops)


def load_crops(dataset: str | None, n: int) -> np.ndarray:
    if dataset is None:
        return crops_from_lfw(n)
    from facegan.tasks.common.paths import resolve_dataset_path

    path = resolve_dataset_path(dataset, 64)[1]
    faces = np.load(path / "faces.npy", mmap_mode="r")
    pick = np.random.default_rng(0).choice(len(faces), size=min(n, len(faces)), replace=False)
    return np.asarray(faces[np.sort(pick)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--dataset", default=None, help="crop dataset NAME or PATH (64 px)")
    parser.add_argument("--workers", type=int, default=None, help="scoring processes (default: all cores)")
    args = parser.parse_args()

    from facegan.evaluation import detection, embeddings, face_lib

    images = load_crops(args.dataset, args.n)
    print(f"{len(images)} real 64 px crops, {os.cpu_count()} cores, protocol: {detection.PROTOCOL}")
    face_lib.load()

    start = time.perf_counter()
    seq = detection.detect_faces(images, workers=1)
    baseline = time.perf_counter() - start
    print(f"(a) detection, one process:        {baseline:6.1f} s  ({len(images) / baseline:5.1f} img/s)")

    face_lib.shutdown()  # (b) and (c) each include starting the worker pool
    cpu0 = cpu_seconds()
    start = time.perf_counter()
    par = detection.detect_faces(images, workers=args.workers)
    det_s = time.perf_counter() - start
    face_lib.shutdown()  # reap the workers so their CPU time is counted
    det_cpu = cpu_seconds() - cpu0
    print(
        f"(b) detection, process pool:       {det_s:6.1f} s  ({len(images) / det_s:5.1f} img/s), "
        f"detected {par.mean():.3f}, {det_cpu:.1f} CPU-s"
    )
    assert np.array_equal(seq, par), "parallel and sequential detection disagree"

    cpu0 = cpu_seconds()
    start = time.perf_counter()
    found, enc = embeddings.detect_and_encode(images, workers=args.workers)
    both_s = time.perf_counter() - start
    face_lib.shutdown()
    both_cpu = cpu_seconds() - cpu0
    print(
        f"(c) detection + encodings, pool:   {both_s:6.1f} s  ({len(images) / both_s:5.1f} img/s), "
        f"encodings {enc.shape}, {both_cpu:.1f} CPU-s"
    )
    cores = args.workers or os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"load average during the run: {load:.2f} on {os.cpu_count()} cores; with the cores to "
        f"itself (CPU-s / {cores} workers): detection ~{det_cpu / cores:.1f} s, with encodings "
        f"~{both_cpu / cores:.1f} s"
    )
    print(f"ratio: {baseline / det_s:.2f}")
    print(f"seconds: detection {det_s:.1f}, with encodings {both_s:.1f}")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the pool's workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
