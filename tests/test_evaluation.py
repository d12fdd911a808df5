"""Scoring functions of the evaluate stage on real data: the detection protocol (real LFW crops vs
flower photos), the face_recognition import guard, the metrics and the memorisation column."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from facegan.evaluation import detection
from tests.conftest import REPO, shared

pytestmark = pytest.mark.no_prefect  # pure: no Prefect flow runs here (lfw_crops starts Prefect itself)


def flowers_64(count: int = 400) -> np.ndarray:
    """Negative control: flower photos (no faces) resized to 64 px with INTER_AREA, as crops are.
    (Running the Haar crop stage on flowers yields crops for only ~3% of them, so the protocol's
    false-positive rate is measured on the whole photos at the crop size.)"""
    root = shared("negatives", "flowers")
    files = sorted(root.rglob("*.jpg"))
    rng = np.random.default_rng(0)
    picked = [files[i] for i in rng.choice(len(files), size=min(count, len(files)), replace=False)]
    images = []
    for path in picked:
        bgr = cv2.imread(str(path))
        if bgr is not None:
            images.append(cv2.resize(bgr, (64, 64), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    return np.stack(images)


def test_protocol_does_not_hallucinate_faces_on_flowers():
    flowers = flowers_64(400)
    assert len(flowers) >= 390
    rate = detection.detection_rate(flowers)
    assert rate <= 0.02, f"detection rate on 64 px flowers is {rate:.3f}"


def test_detect_faces_returns_one_boolean_per_image_and_rejects_bad_input():
    flowers = flowers_64(20)
    detected = detection.detect_faces(flowers, workers=1)
    assert detected.dtype == bool and detected.shape == (len(flowers),)
    with pytest.raises(detection.InputError, match="uint8"):
        detection.detect_faces(flowers.astype(np.float32))
    with pytest.raises(detection.InputError, match="RGB"):
        detection.detect_faces(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(detection.InputError, match="detector"):
        detection.detect_faces(flowers, detector="mtcnn")


def test_import_guard_turns_quit_into_a_clear_error(tmp_path):
    # face_recognition calls quit() when face_recognition_models fails to import: shadow that
    # package with a broken one and check that load() raises our error instead of exiting.
    broken = tmp_path / "face_recognition_models"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('models missing (test)')\n")
    code = (
        "from facegan.evaluation import face_lib\n"
        "try:\n    face_lib.load()\nexcept face_lib.FaceLibraryError as exc:\n"
        "    print('GUARDED:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GUARDED: face_recognition could not load its models" in proc.stdout


@pytest.fixture(scope="module")
def lfw64(lfw_crops) -> Path:
    return lfw_crops / "datasets" / "lfw-sample" / "64"


def test_real_control_on_lfw_64px_crops_is_detected(lfw64):
    faces = np.load(lfw64 / "faces.npy")
    assert len(faces) >= 250 and faces.shape[1:] == (64, 64, 3)
    rate = detection.detection_rate(faces)
    assert rate >= 0.95, f"real LFW 64 px crops detected only {rate:.3f} of the time"


def test_held_out_split_is_by_identity_and_deterministic(lfw64):
    from facegan.evaluation.real_sets import held_out_mask
    from facegan.tasks.cropping.dataset import load_dataset
    from facegan.tasks.evaluating.scoring import load_real_sets as real_sets

    _, manifest = load_dataset(lfw64, 64)
    held = held_out_mask(manifest, 0.5)
    assert held.any() and (~held).any()
    assert np.array_equal(held, held_out_mask(manifest.sample(frac=1, random_state=1).sort_index(), 0.5))
    by_person = pd.Series(held).groupby(manifest["identity"].values).nunique()
    assert (by_person == 1).all(), "a person has crops on both sides of the split"
    sets = real_sets(lfw64, 40, 64, fraction=0.5, seed=0)
    assert len(sets.control) == len(sets.reference) == 40
    assert sets.info["held_out_crops"] + sets.info["training_crops"] == len(manifest)
    control = {a.tobytes() for a in sets.control}
    assert not control & {a.tobytes() for a in sets.reference}
    assert not control & {a.tobytes() for a in sets.training}


def test_memorisation_column_flags_training_copies_not_held_out_faces(lfw64, tmp_path):
    """Generators that are not GANs, fed through the same scoring as `facegan evaluate`:
    one returns training crops verbatim, one returns real held-out crops it never saw."""
    from facegan.evaluation import metrics
    from facegan.tasks.evaluating.scoring import Scored, row_metrics, score_images
    from facegan.tasks.evaluating.scoring import load_real_sets as real_sets

    sets = real_sets(lfw64, 40, 64, fraction=0.5, seed=0, max_training=80)
    rng = np.random.default_rng(1)

    def verbatim_generator(n: int) -> np.ndarray:
        return sets.training[rng.choice(len(sets.training), size=n, replace=False)]

    def held_out_generator(n: int) -> np.ndarray:
        return sets.reference[:n]  # held-out faces, disjoint from the control set

    cache = tmp_path / "cache"
    training_det, training_enc = score_images(sets.training, cache_dir=cache)
    control_det, control_enc = score_images(sets.control, cache_dir=cache)
    # the control doubles as the reference here: only memorisation is measured
    space = metrics.face_space(control_enc, control_det, control_enc, control_det, training_enc, training_det)
    assert np.isfinite(space.threshold)
    results = {}
    for name, generator in (("verbatim", verbatim_generator), ("held-out", held_out_generator)):
        images = generator(40)
        det, enc = score_images(images, cache_dir=cache)  # cached: same crops as above
        results[name] = row_metrics(Scored(name, images, det, enc, {}), space, 3)
        assert results[name]["faces"] == det.sum() >= 36  # real crops: ~99% detected
    assert results["verbatim"]["memorised"] >= 0.95
    assert results["verbatim"]["nearest_mean"] < 1e-3
    assert results["held-out"]["memorised"] <= 0.1  # ~1% by construction; a few of 40 at most
    assert results["held-out"]["nearest_mean"] > 0.3


def test_metrics_on_known_distributions():
    from facegan.evaluation import metrics

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8))
    assert metrics.frechet_distance(a, b) < 0.05
    shifted = b + np.array([2.0] + [0.0] * 7)
    assert metrics.frechet_distance(a, shifted) == pytest.approx(4.0, abs=0.3)
    p, r = metrics.precision_recall(a[:500], b[:500], k=3)
    assert p > 0.8 and r > 0.8  # same distribution (k=3 balls miss some tail points)
    collapsed = np.repeat(b[:1], 500, axis=0) + 1e-3 * rng.normal(size=(500, 8))
    p, r = metrics.precision_recall(a[:500], collapsed, k=3)
    assert p == 1.0 and r < 0.05  # mode collapse: realistic but no diversity
    near = metrics.nearest_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0], [10.0, 0.0]]))
    assert near.tolist() == pytest.approx([0.0, 5.0])
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 4 sides 1, 2 diagonals sqrt 2
    assert metrics.mean_pairwise_distance(square) == pytest.approx((4 + 2 * np.sqrt(2)) / 6)
    assert metrics.encoding_spread(np.repeat(a[:1], 50, axis=0), a[:500]) == pytest.approx(0.0, abs=1e-6)
    assert metrics.encoding_spread(b[:500], a[:500]) == pytest.approx(1.0, abs=0.05)
    assert metrics.encoding_spread(collapsed, a[:500]) < 0.01


def test_face_space_numbers_need_enough_detected_faces():
    """Below MIN_FACES detected faces a set gets NaN and the reason, not numbers on non-faces;
    the undetected rows' encodings never enter a number."""
    from facegan.evaluation import metrics

    rng = np.random.default_rng(0)
    real = rng.normal(size=(150, 8))  # control, reference, training: 50 each
    every = np.ones(50, bool)
    space = metrics.face_space(real[:50], every, real[50:100], every, real[100:], every)
    few = np.zeros(40, bool)
    few[: metrics.MIN_FACES - 1] = True
    row = metrics.face_space_row(rng.normal(size=(40, 8)), few, space)
    assert row["faces"] == metrics.MIN_FACES - 1
    assert all(np.isnan(row[k]) for k in ("frechet", "precision", "recall", "spread", "memorised", "nearest_mean"))
    assert row["note"] == f"{metrics.MIN_FACES - 1} of 40 faces detected (fewer than {metrics.MIN_FACES})"
    # detected: 30 training rows (copies); undetected: 10 far-away rows that must not count
    mixed = np.concatenate([real[100:130], 100 + rng.normal(size=(10, 8))])
    flags = np.r_[np.ones(30, bool), np.zeros(10, bool)]
    row = metrics.face_space_row(mixed, flags, space)
    assert row["faces"] == 30 and row["memorised"] == 1.0 and row["nearest_mean"] < 1e-3
    assert row["precision"] > 0.6 and row["note"] == ""
    # a real reference with too few detected faces: every row says so
    thin = metrics.face_space(real[:50], every, real[50:100], np.arange(50) < 5, real[100:], every)
    assert thin.reference is None and np.isnan(thin.floor) and "real reference: 5 of 50" in thin.reference_note
    row = metrics.face_space_row(real[:30], every[:30], thin)
    assert np.isnan(row["frechet"]) and np.isfinite(row["memorised"]) and "real reference" in row["note"]


@pytest.mark.no_prefect
def test_loading_face_recognition_keeps_pil_rejecting_truncated_files():
    """face_recognition sets PIL's process-wide LOAD_TRUNCATED_IMAGES; after facegan loads it, a
    truncated JPEG must still be refused (a serve process imports images after scoring faces)."""
    code = (
        "import io\n"
        "from PIL import Image, ImageFile\n"
        "from facegan.evaluation import face_lib\n"
        "face_lib.load()\n"
        "buf = io.BytesIO()\n"
        "Image.new('RGB', (64, 64), 'red').save(buf, 'JPEG')\n"
        "try:\n"
        "    Image.open(io.BytesIO(buf.getvalue()[:300])).load()\n"
        "except OSError:\n"
        "    print('refused', ImageFile.LOAD_TRUNCATED_IMAGES)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.strip() == "refused False", proc.stdout + proc.stderr[-2000:]


def test_a_killed_scorer_leaves_no_face_recognition_workers_behind():
    """SIGKILL gives the scorer no chance to stop its process pool: its workers notice they were
    orphaned and exit (they used to live on under init, ~200 MB each)."""
    import signal
    import time

    script = (
        "import numpy as np, os, time\n"
        "from facegan.evaluation import detection\n"
        "images = np.random.default_rng(0).integers(0, 255, (200, 64, 64, 3), dtype=np.uint8)\n"
        "detection.face_counts(images, workers=2)\n"
        "print('scored', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "scored"

        def children() -> list[int]:
            kids = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == proc.pid:
                    kids.append(int(stat.parent.name))
            return kids

        workers = children()
        assert len(workers) >= 2, workers  # the pool is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphaned workers still running: {left}"
