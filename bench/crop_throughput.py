"""Crop throughput: facegan's parallel crop flow vs the seed's plain sequential loop
(imread -> Haar detect -> crop -> write), on the same LFW photos, in one run.

    .venv/bin/python bench/crop_throughput.py [--images 1000] [--workers N]

The photos are the first LFW photos of ../shared/data's archive (FACEGAN_SHARED_DATA); nothing
needs to be passed.

Both sides do the same work per image: detect with the same Haar parameters, cut the largest
face, write it at 48, 64 and 128 px. The seed loop gets OpenCV's own threads (its detectMultiScale
already spreads over the cores: ~1.5x a single thread here). facegan's flow (--largest-only) wins
by searching big faces first (about half the detection work on portraits), by encoding PNGs inside
the shard tasks, in parallel with other shards' detection (RLE-strategy zlib level 1), and by
hard-linking them into the dataset. facegan's padded second search (tight chips) runs only on the
images where the normal search found nothing (~2% of LFW), so it costs next to nothing here.
Prints images/s of each, facegan's per-pass counts and, last, `ratio: X.XX`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2

from facegan.testing import extract_lfw_subset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def seed_loop(files: list[Path], out: Path) -> int:
    """The seed project's way: one image after another, default OpenCV settings."""
    clf = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    n = 0
    for f in files:
        img = cv2.imread(str(f))
        if img is None:
            continue
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        faces = clf.detectMultiScale(grey, scaleFactor=1.16, minNeighbors=5, minSize=(25, 25))
        if len(faces) == 0:
            continue
        x, y, w, h = max(faces, key=lambda b: b[2] * b[3])
        m = int(0.1 * w)
        face = img[max(y - m, 0) : y + h + m, max(x - m, 0) : x + w + m]
        for size in (48, 64, 128):
            cv2.imwrite(str(out / f"{n:06d}_{size}.png"), cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA))
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # the flows below start Prefect's ephemeral server: a busy machine needs more than its 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    tgz = SHARED_DATA / "archives" / "lfw-deepfunneled.tgz"
    if not tgz.is_file():
        sys.exit(f"crop_throughput: {tgz} not found (set FACEGAN_SHARED_DATA to the shared data folder)")

    tmp = Path(tempfile.mkdtemp(prefix="facegan-bench-crop-"))
    os.environ["FACEGAN_HOME"] = str(tmp / "home")
    src = extract_lfw_subset(tgz, tmp / "lfw", args.images)
    files = sorted(src.rglob("*.jpg"))

    from facegan.config.acquire import AcquireConfig
    from facegan.config.crop import CropConfig
    from facegan.flows.acquire import acquire
    from facegan.flows.crop import crop

    acquire(AcquireConfig(path=src, name="bench"))
    (tmp / "seed").mkdir()
    t0 = time.perf_counter()
    seed_crops = seed_loop(files, tmp / "seed")
    seed_s = time.perf_counter() - t0
    result = crop(CropConfig(raw="bench", largest_only=True, workers=args.workers)).stats
    ours_s = result["seconds"]
    print(f"images: {len(files)}  workers: {args.workers}  cores: {os.cpu_count()}")
    print(f"seed sequential loop: {seed_crops} faces in {seed_s:.1f} s = {len(files) / seed_s:.1f} img/s")
    print(
        f"facegan crop flow:    {result['crops']} faces in {ours_s:.1f} s = {len(files) / ours_s:.1f} img/s "
        "(incl. dedupe, faces.npy, manifests, contact sheets)"
    )
    print(
        f"facegan passes: {result['images_haar']} images by Haar, {result['images_haar_padded']} by the padded "
        f"search (run only where Haar found nothing), {result['images_aligned']} aligned, "
        f"{result['images_no_face']} without a face"
    )
    print(f"ratio: {seed_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
