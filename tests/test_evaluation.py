"""Scoring functions of the evaluate stage on real data: the detection protocol (real LFW crops vs
flower photos), the face_recognition import guard, the metrics and the memorisation column."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation import detection
from tests.conftest import REPO, shared


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
    code = ("from evaluation import face_lib\n"
            "try:\n    face_lib.load()\nexcept face_lib.FaceLibraryError as exc:\n"
            "    print('GUARDED:', exc)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GUARDED: face_recognition could not load its models" in proc.stdout
