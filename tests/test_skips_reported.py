"""Issue #25 items 8, 11 and 12: what acquire and crop skipped or rejected is said, and why (an
archive inside a URL list, an unreadable subfolder, images too small for --aligned), with the crop
summary's largest and extra faces and the recipe help.

Each test runs the real `facegan` command in-process through facegan.flows.cli.main(argv), or in a
subprocess where the process itself is what is tested (the privileges it runs with)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, error_lines, extract_lfw_subset, run_facegan, shared
from PIL import Image

from facegan.testing import LoopbackServer, Route

FAST = ["--workers", "1", "--no-progress"]

# --- item 8: what was skipped is said, and why ---------------------------------------------------


def _tgz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _run_id(out: str) -> str:
    return out.rsplit("(MLflow run ", 1)[1].split(")", 1)[0]


def test_an_archive_in_a_url_list_is_named_and_not_transient(tmp_path, capsys, facegan_home):
    from facegan.tasks.common import tracking

    photo = sorted(shared("photos", "face_recognition").glob("*.jpg"))[0].read_bytes()
    archive = _tgz({"faces/a.jpg": photo})
    with LoopbackServer({"/a.jpg": Route(photo), "/faces.tgz": Route(archive, "application/gzip")}) as srv:
        listed = tmp_path / "urls.txt"
        listed.write_text(f"{srv.url('/a.jpg')}\n{srv.url('/faces.tgz')}\n")
        code, out, err = run_facegan(
            capsys, "acquire", "--url-list", listed, "--name", "listed", "--timeout", "5", "--no-progress"
        )
        assert code == 0, err
        assert "2 files/URLs, 1 ok, 0 duplicates, 1 failed (1 archive not an image)" in out, out
        row = (
            pd.read_parquet(facegan_home / "raw" / "listed" / "manifest.parquet")
            .set_index("url")
            .loc[srv.url("/faces.tgz")]
        )
        assert row["reason"] == (
            f"archive, not an image: a tar archive; URL lists hold images only: fetch it "
            f"with `facegan acquire --url {srv.url('/faces.tgz')}`"
        )
        assert tracking.get_run(_run_id(out)).data.metrics["failed_archive_not_an_image"] == 1

        # not transient: a rerun does not fetch it again
        before = srv.counts["/faces.tgz"]
        code, out, err = run_facegan(capsys, "acquire", "--url-list", listed, "--name", "listed", "--no-progress")
        assert code == 0 and srv.counts["/faces.tgz"] == before, err

        # a list of archives only: one line that says so, and no "rerun to retry the transient failures"
        only = tmp_path / "archives.txt"
        only.write_text(srv.url("/faces.tgz") + "\n")
        code, _, err = run_facegan(capsys, "acquire", "--url-list", only, "--name", "only-archives", "--no-progress")
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert "(1 archive not an image; e.g. " in lines[0] and "fetch it with `facegan acquire --url" in lines[0]
    assert "transient" not in lines[0] and "rerun" not in lines[0]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv")
def test_an_unreadable_subfolder_is_reported(tmp_path, facegan_home):
    """Subprocess: root reads any folder, so the command runs without the capabilities that let
    it (setpriv), as a user's process would."""
    from facegan.tasks.common import tracking

    photos = extract_lfw_subset(tmp_path / "photos", 4)
    locked = next(p for p in (photos / "lfw-deepfunneled").iterdir() if p.is_dir())
    readable = sum(1 for p in photos.rglob("*.jpg") if not p.is_relative_to(locked))
    locked.chmod(0)
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run(
            [
                *prefix,
                sys.executable,
                "-m",
                "facegan.flows.cli",
                "acquire",
                "--path",
                photos,
                "--name",
                "locked",
                *FAST,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "FACEGAN_HOME": str(facegan_home)},
            cwd=REPO,
        )
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{readable + 1} files/URLs, {readable} ok, 0 duplicates, 1 failed (1 unreadable folder)" in proc.stdout
    table = pd.read_parquet(facegan_home / "raw" / "locked" / "manifest.parquet")
    failed = table[table["status"] == "failed"]
    assert failed["path"].tolist() == [str(locked)] and failed["reason"].tolist() == [
        "unreadable folder: Permission denied"
    ]
    assert tracking.get_run(_run_id(proc.stdout)).data.metrics["failed_unreadable_folder"] == 1


# --- item 11: --aligned rejects images too small to be a face ------------------------------------


def test_aligned_rejects_tiny_images_like_any_reject(tmp_path, capsys, facegan_home):
    photos = extract_lfw_subset(tmp_path / "photos", 3)
    Image.new("RGB", (1, 1)).save(photos / "black-1x1.png")
    Image.new("RGB", (31, 200), (90, 60, 40)).save(photos / "narrow-31x200.png")
    code, _, err = run_facegan(capsys, "acquire", "--path", photos, "--name", "tiny", *FAST)
    assert code == 0, err
    code, out, err = run_facegan(capsys, "crop", "--raw", "tiny", "--aligned", "--sizes", "48", "--workers", "1")
    assert code == 0, err
    assert "images without a face: 2 (2 too small)" in out, out
    crops = np.load(facegan_home / "datasets" / "tiny" / "48" / "faces.npy")
    assert len(crops) == 3
    rejected = pd.read_parquet(facegan_home / "datasets" / "tiny" / "48" / "rejected.parquet")
    reasons = dict(zip(rejected["source"].map(lambda p: Path(p).name), rejected["reason"]))
    assert reasons == {
        "black-1x1.png": "too small: 1x1 px (--aligned needs at least 32 px on each side)",
        "narrow-31x200.png": "too small: 31x200 px (--aligned needs at least 32 px on each side)",
    }

    only = tmp_path / "only-tiny"
    only.mkdir()
    Image.new("RGB", (1, 1)).save(only / "black.png")
    Image.new("RGB", (8, 8), (200, 200, 200)).save(only / "grey.png")
    code, _, err = run_facegan(capsys, "acquire", "--path", only, "--name", "only-tiny", *FAST)
    assert code == 0, err
    code, _, err = run_facegan(capsys, "crop", "--raw", "only-tiny", "--aligned", "--sizes", "48", "--workers", "1")
    assert code == 2 and error_lines(err)[-1] == (
        "facegan: error: no faces found in 2 images (0 unreadable, 2 too small): nothing to write"
    ), err


# --- item 12: the largest face of each photo vs the extra (background) faces; the recipe help ----


def test_crop_summary_counts_largest_and_extra_faces(tmp_path, capsys, facegan_home):
    group = tmp_path / "group"
    group.mkdir()
    for name in ("2008_002470.jpg", "2008_004176.jpg"):  # 6 and 7 labelled faces
        shutil.copy(shared("photos", "dlib_faces", name), group / name)
    code, _, err = run_facegan(capsys, "acquire", "--path", group, "--name", "group", *FAST)
    assert code == 0, err
    code, out, err = run_facegan(capsys, "crop", "--raw", "group", "--sizes", "48", "--workers", "1")
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("crops: "))
    largest, extra = int(line.split()[1]), int(line.split(", ")[1].split()[0])
    assert largest == 2 and extra >= 4, line
    assert line.endswith("extra (background) faces (--largest-only keeps only the largest)")
    assert len(np.load(facegan_home / "datasets" / "group" / "48" / "faces.npy")) == largest + extra

    code, out, err = run_facegan(
        capsys, "crop", "--raw", "group", "--name", "group-largest", "--sizes", "48", "--largest-only", "--workers", "1"
    )
    assert code == 0, err
    assert "crops: 2 the largest face of their photo, 0 extra (background) faces\n" in out + "\n", out


@pytest.mark.no_prefect
def test_recipe_help_mentions_the_learning_rate_ramp_down(capsys):
    code, out, _ = run_facegan(capsys, "train", "--help")
    text = " ".join(out.split())
    assert (
        code == 0 and "a learning-rate ramp-down to 0 over the last quarter of the budget, --lr-rampdown 0.25" in text
    ), text
