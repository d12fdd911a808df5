"""Crop stage on real photos: geometry, datasets, detector quality, bad input, kill + resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facegan.tasks.cropping.geometry import cut_square, square_box


def test_lfw_sample_dataset_is_consistent(lfw_crops):
    for size in (48, 64, 128):
        folder = lfw_crops / "datasets" / "lfw-sample" / str(size)
        manifest = pd.read_parquet(folder / "manifest.parquet")
        faces = np.load(folder / "faces.npy")
        assert faces.dtype == np.uint8 and faces.shape == (len(manifest), size, size, 3)
        assert len(manifest) >= 290  # 300 photos, largest face only: Haar finds ~99% of LFW
        pngs = sorted(p.name for p in folder.glob("[0-9]*.png"))
        assert pngs == list(manifest["file"])
        for i in (0, len(manifest) // 2, len(manifest) - 1):
            with Image.open(folder / manifest["file"][i]) as im:
                assert im.mode == "RGB" and im.size == (size, size)
                assert np.array_equal(np.asarray(im), faces[i])
        # identities come from the LFW folder names
        assert manifest["identity"].notna().all()
        assert all(p.split("/")[-2] == ident for p, ident in zip(manifest["source"], manifest["identity"]))
        assert not list(folder.glob(".*.part"))


@pytest.mark.parametrize(
    "box,img,expect_pad",
    [
        ((0, 0, 50, 50), (200, 100), False),  # top-left corner: shifted inside
        ((170, 80, 30, 20), (200, 100), False),  # bottom-right, non-square box
        ((10, 10, 90, 90), (100, 100), True),  # grown square larger than the image: padded
        ((0, 40, 20, 60), (30, 200), True),  # narrow image
    ],
)
@pytest.mark.no_prefect
def test_square_box_never_skews_or_crashes(box, img, expect_pad):
    w, h = img
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    sq = square_box(*box, w, h, margin=0.1)
    crop = cut_square(image, sq)
    assert crop.shape == (sq.side, sq.side, 3)
    assert sq.padded == expect_pad
    assert sq.side == round(max(box[2], box[3]) * 1.2)
    if not sq.padded:
        assert 0 <= sq.x0 and sq.x0 + sq.side <= w and 0 <= sq.y0 and sq.y0 + sq.side <= h


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


@pytest.mark.no_prefect
def test_haar_recall_and_precision_on_hand_labelled_boxes():
    """dlib's 43 hand-labelled faces in PASCAL VOC group photos. Measured with the default
    parameters (scaleFactor 1.16, minNeighbors 5, minSize 25): recall 35/43 = 0.814 at IoU >= 0.3,
    precision 35/35 = 1.0."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.detect import detect_faces, read_bgr

    root, truth = dlib_face_boxes()
    assert sum(map(len, truth.values())) == 43
    hits = false_pos = 0
    for file, boxes in truth.items():
        matched: set[int] = set()
        for det in detect_faces(read_bgr(root / file), CropConfig()):
            best = max(range(len(boxes)), key=lambda i: _iou(det, boxes[i]))
            if _iou(det, boxes[best]) >= 0.3 and best not in matched:
                matched.add(best)
                hits += 1
            else:
                false_pos += 1
    recall, precision = hits / 43, hits / max(hits + false_pos, 1)
    assert recall >= 0.78, recall
    assert precision >= 0.95, precision


def test_largest_only_search_finds_the_full_searchs_largest_face(lfw_crops):
    """The big-faces-first pass of --largest-only against the full pyramid search, on the 300 LFW
    photos of the fixture and on dlib's group photos (small faces: the fallback path). Measured:
    the same images get a face, 98% of largest boxes identical, the rest within IoU 0.93."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.detect import detect_faces, read_bgr

    raw = pd.read_parquet(lfw_crops / "raw" / "lfw-sample" / "manifest.parquet")
    photos = list(raw["path"]) + sorted(str(p) for p in shared("photos", "dlib_faces").glob("*.jpg"))
    identical, ious = 0, []
    for path in photos:
        image = read_bgr(path)
        full = detect_faces(image, CropConfig())
        fast = detect_faces(image, CropConfig(largest_only=True))
        assert bool(full) == bool(fast), path
        if full:
            identical += full[0] == fast[0]
            ious.append(_iou(full[0], fast[0]))
    assert len(ious) >= 290
    assert min(ious) >= 0.65, min(ious)  # the same face, never another one
    assert identical >= 0.95 * len(ious), (identical, len(ious))


def test_no_crops_from_face_free_video_frames(capfd):
    frames = shared("negatives", "video_frames")
    code, _, err = facegan_result(capfd, "acquire", "--path", frames, "--name", "frames")
    assert code == 0, err[-2000:]
    code, _, err = facegan_result(capfd, "crop", "--raw", "frames")
    assert code == 2
    assert "no faces found in 151 images" in err
    from facegan.tasks.common.paths import dataset_dir

    assert not any((dataset_dir("frames") / str(s) / "faces.npy").exists() for s in (48, 64, 128))


from conftest import dlib_face_boxes, facegan_result, file_digests, shared  # noqa: E402


def _copy_raw(src_home, dst_home, name="lfw-sample"):
    import shutil

    dst = dst_home / "raw" / name
    dst.mkdir(parents=True)
    shutil.copy(src_home / "raw" / name / "manifest.parquet", dst / "manifest.parquet")


def test_crop_killed_midway_resumes_to_the_same_result(lfw_crops, facegan_home, tmp_path, capfd):
    """SIGKILL a real `facegan crop` after a few shards; the rerun gives exactly the dataset an
    uninterrupted run gave (the lfw_crops fixture's), with no partial files left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    _copy_raw(lfw_crops, facegan_home)
    work = facegan_home / "datasets" / "lfw-sample" / ".work"
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegan.flows.cli", "crop", "--largest-only", "--shard-size", "15", "--workers", "1"],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list(work.glob("shard-*.npz"))) < 3:
        assert proc.poll() is None, "crop finished before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in work.glob("shard-*.npz")}
    assert 3 <= len(done_before) < 20
    assert not (facegan_home / "datasets" / "lfw-sample" / "64" / "faces.npy").exists()

    code, out, err = facegan_result(capfd, "crop", "--largest-only", "--shard-size", "15")  # the rerun in-process
    assert code == 0, err[-3000:]
    assert "cropped 300 images" in out
    for size in (48, 64, 128):
        got = facegan_home / "datasets" / "lfw-sample" / str(size)
        want = lfw_crops / "datasets" / "lfw-sample" / str(size)
        assert np.array_equal(np.load(got / "faces.npy"), np.load(want / "faces.npy"))
        cols = ["file", "source", "face_index", "x", "y", "w", "h", "identity"]
        pd.testing.assert_frame_equal(
            pd.read_parquet(got / "manifest.parquet")[cols], pd.read_parquet(want / "manifest.parquet")[cols]
        )
    leftovers = [p for p in facegan_home.rglob("*") if p.name.endswith(".part") or p.name.startswith(".trash")]
    assert leftovers == []


def test_bad_input_is_one_line_and_leaves_datasets_untouched(lfw_crops, facegan_home, capfd):
    import shutil

    _copy_raw(lfw_crops, facegan_home)
    shutil.copytree(lfw_crops / "datasets", facegan_home / "datasets")

    before = file_digests(facegan_home / "datasets")
    for args, message in [
        (["crop", "--sizes", "50"], "--sizes 50: Input should be 48, 64 or 128"),
        (["crop", "--raw", "no-such-set"], "unknown raw set 'no-such-set' (known: lfw-sample)"),
        (["crop", "--margin", "-1"], "--margin"),
        (["crop", "--name", "../escape"], "invalid name"),
    ]:
        code, out, err = facegan_result(capfd, *args)  # in-process (test_first_day runs crop's process)
        assert code == 2, (args, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and message in lines[0], (args, err)
        assert "Traceback" not in out + err
    assert file_digests(facegan_home / "datasets") == before


def test_odd_inputs_exif_grey_rgba_16bit_and_unreadable(facegan_home, tmp_path):
    """EXIF-rotated JPEG, greyscale, RGBA and 16-bit PNGs of a real portrait all give an upright
    RGB face crop; a source file that disappears before cropping is counted, not fatal."""
    from facegan.config.acquire import AcquireConfig
    from facegan.config.crop import CropConfig
    from facegan.flows.acquire import acquire
    from facegan.flows.crop import crop

    src = tmp_path / "odd"
    src.mkdir()
    with Image.open(shared("photos", "skimage", "astronaut.png")) as im:
        rgb = im.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display -> stored pixels are rotated CCW
    rgb.rotate(90, expand=True).save(src / "rotated.jpg", exif=exif, quality=95)
    rgb.convert("L").save(src / "grey.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(src / "rgba.png")
    grey16 = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey16).save(src / "deep16.png")
    rgb.save(src / "vanishing.jpg")
    acquire(AcquireConfig(path=src, name="odd"))
    (src / "vanishing.jpg").unlink()
    result = crop(CropConfig(raw="odd", largest_only=True, sizes=[64], dedupe=False))
    assert result.stats["images_in"] == 5 and result.stats["images_unreadable"] == 1
    assert result.crops == {64: 4} and result.stats["crops_64"] == 4
    manifest = pd.read_parquet(facegan_home / "datasets" / "odd" / "64" / "manifest.parquet")
    assert sorted(p.split("/")[-1] for p in manifest["source"]) == ["deep16.png", "grey.png", "rgba.png", "rotated.jpg"]
    faces = np.load(facegan_home / "datasets" / "odd" / "64" / "faces.npy")
    assert faces.shape == (4, 64, 64, 3)


def test_rerun_is_skipped_and_logged_to_mlflow(lfw_crops, monkeypatch):
    from facegan.config.crop import CropConfig
    from facegan.flows.crop import crop
    from facegan.tasks.common import tracking

    monkeypatch.setenv("FACEGAN_HOME", str(lfw_crops))
    # the fixture's runs are in its home's own store (lfw_crops/mlflow.db; see tests/conftest.py)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("FACEGAN_MLFLOW_ARTIFACTS")
    first_meta = json.loads((lfw_crops / "datasets" / "lfw-sample" / "64" / "meta.json").read_text())
    mtime = (lfw_crops / "datasets" / "lfw-sample" / "64" / "faces.npy").stat().st_mtime_ns
    again = crop(CropConfig(raw="lfw-sample", largest_only=True))
    assert again.skipped is True and again.run_id == first_meta["run_id"]
    assert (lfw_crops / "datasets" / "lfw-sample" / "64" / "faces.npy").stat().st_mtime_ns == mtime

    run = tracking.get_run(first_meta["run_id"])
    assert run.data.tags["facegan.stage"] == "crop" and run.info.status == "FINISHED"
    assert run.data.params["largest_only"] == "True" and run.data.params["sizes"] == "[48, 64, 128]"
    assert run.data.metrics["images_in"] == 300 and run.data.metrics["crops_64"] >= 290
    assert run.data.metrics["images_one_face"] + run.data.metrics["images_many_faces"] >= 290
    for size in (48, 64, 128):
        assert tracking.list_artifacts(run.info.run_id, f"contact_sheets/{size}") == [
            f"contact_sheets/{size}/contact_sheet.png"
        ]
