"""The whole LFW, as a user gets it: download the published tgz (13,233 photos) from a loopback
web server with `facegan acquire --url`, crop the largest face of every photo with `facegan crop
--largest-only`, and check the three datasets. A full-size run: it lives here, not in the test
suite (the suite crops LFW subsets from the same archive).

    .venv/bin/python bench/lfw_full.py [--keep DIR]

The archive is ../shared/data/archives/lfw-deepfunneled.tgz (FACEGAN_SHARED_DATA); nothing needs
to be passed. Prints each stage's wall time, the crops per size and, last, `ratio: X.XXX`: the crop
yield (crops per photo) against the 12,900 / 13,233 floor it must stay above. Exits 1 when a check
fails. Measured on a 2-core Xeon: acquire 41 s, crop 160 s (83 photos/s), 13,233 crops per size
(every photo: the padded second search finds the faces the first misses)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facegan.testing import LoopbackServer, Route

REPO = Path(__file__).resolve().parents[1]

PHOTOS, FLOOR = 13_233, 12_900  # LFW's photos; the crops each size must keep


def facegan(home: Path, *args: str) -> float:
    """Run the real `facegan` command; its wall time in seconds (exit on failure)."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "FACEGAN_HOME": str(home)},
    )
    if proc.returncode != 0:
        sys.exit(f"facegan {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - start


def check(folder: Path, size: int) -> int:
    """The dataset's manifest, array and PNGs agree; identities are LFW's folder names."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    manifest = pd.read_parquet(folder / "manifest.parquet")
    faces = np.load(folder / "faces.npy", mmap_mode="r")
    problems = []
    if len(manifest) < FLOOR:
        problems.append(f"{len(manifest)} crops < {FLOOR}")
    if faces.shape != (len(manifest), size, size, 3):
        problems.append(f"faces.npy shape {faces.shape}")
    if sorted(p.name for p in folder.glob("[0-9]*.png")) != list(manifest["file"]):
        problems.append("PNG files differ from the manifest")
    for i in np.random.default_rng(size).choice(len(manifest), 20, replace=False):
        with Image.open(folder / manifest["file"][i]) as im:
            if im.mode != "RGB" or im.size != (size, size) or not np.array_equal(np.asarray(im), faces[i]):
                problems.append(f"{manifest['file'][i]} differs from faces.npy[{i}]")
    if manifest["identity"].nunique() <= 5000 or (manifest["identity"] == "George_W_Bush").sum() <= 400:
        problems.append("identities are not LFW's people")  # 5,749 people; 530 photos of G. W. Bush
    if not (manifest["identity"] == manifest["source"].str.split("/").str[-2]).all():
        problems.append("identity is not the photo's folder name")
    if problems:
        sys.exit(f"{size} px: " + "; ".join(problems))
    return len(manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="data home to keep the datasets in (default: a temporary one)")
    args = parser.parse_args()
    shared = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data"))
    tgz = shared / "archives" / "lfw-deepfunneled.tgz"
    if not tgz.is_file():
        sys.exit(f"missing {tgz} (set FACEGAN_SHARED_DATA to the shared data folder)")
    with tempfile.TemporaryDirectory(prefix="facegan-lfw-full-") as tmp:
        home = args.keep or Path(tmp)
        with LoopbackServer({f"/{tgz.name}": Route(tgz.read_bytes(), "application/gzip")}) as server:
            acquire_s = facegan(home, "acquire", "--url", server.url(f"/{tgz.name}"), "--name", "lfw")
        crop_s = facegan(home, "crop", "--largest-only")
        counts = {size: check(home / "datasets" / "lfw" / str(size), size) for size in (48, 64, 128)}
    print(f"acquire (download + unpack {PHOTOS} photos): {acquire_s:.1f} s")
    print(f"crop --largest-only: {crop_s:.1f} s ({PHOTOS / crop_s:.0f} photos/s)")
    print("crops per size: " + ", ".join(f"{size} px {n}" for size, n in counts.items()))
    print(f"ratio: {min(counts.values()) / FLOOR:.3f}")


if __name__ == "__main__":
    main()
