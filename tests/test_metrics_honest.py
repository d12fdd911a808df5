"""Face-space metrics rest on detected faces only (issue 25, item 4): three "generators" that are
not GANs — pure noise, one real face repeated, verbatim copies of training faces — scored by the
same steps as `facegan evaluate` (facegan.tasks.evaluating.scoring.score_images,
facegan.tasks.evaluating.report.table_1) against real LFW crops made by the real acquire and crop
flows (the lfw_crops fixture), each with the Table 1 row it must get; and the training curve
metrics (CurveScorer) under the same rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facegan.evaluation import metrics
from facegan.evaluation.report import FACES_COLUMN, MISSING, NOTE_COLUMN, documents, title

N = 50
FACE_SPACE = [
    "memorised (< real p1)",
    "mean nearest-training distance",
    "Fréchet distance (face enc.)",
    "Fréchet ÷ floor",
    "precision",
    "recall",
    "encoding spread",
]


@pytest.fixture(scope="module")
def lfw64(lfw_crops):
    return lfw_crops / "datasets" / "lfw-sample" / "64"


@pytest.fixture(scope="module")
def table(lfw64, tmp_path_factory):
    """Table 1 for noise, one real face repeated N times and N training faces, with the real control."""
    from facegan.config.evaluate import EvaluateConfig
    from facegan.tasks.evaluating.report import table_1
    from facegan.tasks.evaluating.scoring import REAL_LABEL, Scored, load_real_sets, score_images

    cache = tmp_path_factory.mktemp("score-cache")
    real = load_real_sets(lfw64, N, 64, fraction=0.5, seed=0, max_training=150)
    assert real.info["n_real"] == N

    def scored(label: str, images: np.ndarray) -> Scored:
        return Scored(label, images, *score_images(images, workers=2, cache_dir=cache, label=label), {})

    control = scored(REAL_LABEL, real.control)
    face = real.control[int(np.flatnonzero(control.detected)[0])]  # a held-out face the protocol detects
    rng = np.random.default_rng(1)
    rows = [
        scored("noise", rng.integers(0, 256, (N, 64, 64, 3), dtype=np.uint8)),
        scored("one face repeated", np.repeat(face[None], N, axis=0)),
        scored("training copies", real.training[rng.choice(len(real.training), N, replace=False)]),
    ]
    reference = score_images(real.reference, workers=2, cache_dir=cache)
    training = score_images(real.training, workers=2, cache_dir=cache)
    result, numbers = table_1(rows, control, reference, training, real, EvaluateConfig(run=["rows"], n=N))
    print("\n" + documents(result, "test", [], title("lfw-sample", 64))["table1.md"])  # the rows, for the record
    return {row["model"]: row for row in result.to_dict("records")}, numbers, result


def test_noise_gets_no_face_space_numbers_and_says_why(table):
    rows, _, result = table
    noise = rows["noise"]
    assert noise["detection rate"] <= 0.02
    assert noise[FACES_COLUMN] < metrics.MIN_FACES
    for column in FACE_SPACE:
        assert math.isnan(noise[column]), (column, noise[column])  # was precision ~1.0, memorised 0.5
    assert f"of {N} faces detected (fewer than {metrics.MIN_FACES})" in noise[NOTE_COLUMN]
    markdown = documents(result, "test", [], title())["table1.md"]
    noise_line = next(line for line in markdown.splitlines() if line.startswith("| noise |"))
    assert noise_line.count(f"| {MISSING} ") >= len(FACE_SPACE)


def test_one_face_repeated_has_no_diversity(table):
    repeated = table[0]["one face repeated"]
    assert repeated["detection rate"] == 1.0 and repeated[FACES_COLUMN] == N
    assert repeated["encoding spread"] < 0.01  # N copies of one encoding
    assert repeated["recall"] <= 0.05  # covers one real face of N at most
    assert repeated["Fréchet ÷ floor"] > 1.5
    assert repeated[NOTE_COLUMN] == ""


def test_training_copies_are_flagged_as_memorised(table):
    rows, numbers, _ = table
    copies, control = rows["training copies"], rows["real control"]
    assert copies[FACES_COLUMN] >= 0.9 * N  # LFW crops: ~99% detected
    assert copies["memorised (< real p1)"] >= 0.95
    assert copies["memorised (< real p1)"] >= control["memorised (< real p1)"]
    assert copies["mean nearest-training distance"] < 1e-3
    assert 0.7 < copies["encoding spread"] < 1.3  # real faces: as diverse as the reference


def test_real_control_rests_on_its_detected_faces(table):
    rows, numbers, _ = table
    control = rows["real control"]
    assert control[FACES_COLUMN] >= 0.9 * N and control[NOTE_COLUMN] == ""
    assert control["memorised (< real p1)"] <= 0.1
    assert control["Fréchet ÷ floor"] == 1.0
    assert 0.8 < control["encoding spread"] < 1.2
    assert numbers["control_faces"] == control[FACES_COLUMN]
    assert numbers["reference_faces"] >= 0.9 * N and numbers["training_faces"] >= 0.9 * 150
    assert numbers["min_faces"] == metrics.MIN_FACES


def test_curve_metrics_follow_the_same_rule(lfw64):
    """The training curves (facegan.tasks.training.samples.CurveScorer) on the same three kinds of images:
    noise logs the detection rate and face count only; one repeated face has spread and recall ~0;
    real faces get every curve metric."""
    from facegan.tasks.training.samples import CurveScorer

    faces = np.load(lfw64 / "faces.npy")
    scorer = CurveScorer(every=1, n=40, seed=0, dataset_path=lfw64, size=64, held_out=0.5)
    assert scorer.prepare() and scorer._space.reference is not None
    noise = scorer.score_images(np.random.default_rng(2).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8))
    assert set(noise) == {"detection_rate", "face_space_n"}
    assert noise["detection_rate"] <= 0.05 and noise["face_space_n"] < metrics.MIN_FACES
    repeated = scorer.score_images(np.repeat(faces[:1], 40, axis=0))
    assert repeated["face_space_n"] == 40
    assert repeated["encoding_spread"] < 0.01 and repeated["recall"] <= 0.1
    real = scorer.score_images(faces[-40:])
    assert {"frechet", "frechet_floor", "frechet_ratio", "precision", "recall", "encoding_spread"} <= set(real)
    assert real["face_space_n"] >= 36 and 0.7 < real["encoding_spread"] < 1.3
    assert real["frechet_ratio"] < repeated["frechet_ratio"]
