"""`facegan evaluate` end to end: a tiny real DCGAN run on real LFW crops (the lfw_crops fixture),
scored by the real CLI in-process (facegan.flows.cli.main; test_first_day runs a rejected evaluate in its own
process); the report's columns, counts and MLflow contents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import facegan_result
from PIL import Image

from facegan.evaluation.detection import face_counts
from facegan.evaluation.metrics import MIN_FACES
from facegan.evaluation.report import COLUMNS, FACES_COLUMN, INCEPTION_COLUMN, MISSING, NOTE_COLUMN
from facegan.tasks.common import tracking

N = 64


@pytest.fixture(scope="module")
def tiny_run(lfw_crops, tmp_path_factory) -> dict:
    """A real 3-step DCGAN training run on the LFW 64 px crops; returns its run id and home."""
    import os

    from facegan.config.train import TrainConfig
    from facegan.flows.train import train

    home = tmp_path_factory.mktemp("eval-home")
    old = os.environ.get("FACEGAN_HOME")
    os.environ["FACEGAN_HOME"] = str(home)
    try:
        dataset = lfw_crops / "datasets" / "lfw-sample" / "64"
        run_id = train(
            TrainConfig(
                dataset=str(dataset),
                size=64,
                steps=3,
                batch_size=16,
                features=16,
                score_every=0,
                register_model=False,
                name="eval-tiny",
            )
        )
    finally:
        if old is None:
            os.environ.pop("FACEGAN_HOME", None)
        else:
            os.environ["FACEGAN_HOME"] = old
    return {"run_id": run_id, "home": home}


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A torchvision Inception-v3 state dict (random init: no download here) in a local file."""
    import torch
    from torchvision.models import inception_v3

    path = tmp_path_factory.mktemp("weights") / "inception_v3.pt"
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=True).state_dict(), path)
    return path


def test_evaluate_writes_table_1_with_all_columns_and_logs_it(tiny_run, capfd, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(tiny_run["home"]))
    code, out, err = facegan_result(
        capfd, "evaluate", "--run", tiny_run["run_id"], "-n", N, "--held-out", "0.5", "--max-training", "40"
    )  # training faces only feed the memorisation column
    assert code == 0, out[-3000:] + err[-3000:]
    assert "| DCGAN |" in out and "| real control |" in out
    assert "Table 1: face_recognition on generated faces — lfw-sample, 64 px" in out.splitlines()
    report_run = out.strip().splitlines()[-1].removeprefix("mlflow run: ").strip()
    run = tracking.get_run(report_run)
    assert run.data.tags[tracking.STAGE_TAG] == "evaluate"
    assert tiny_run["run_id"] in run.data.tags["facegan.evaluated_runs"]

    folder = tiny_run["home"] / "evaluations" / report_run
    table = pd.read_csv(folder / "table1.csv", na_values=[MISSING], keep_default_na=False)
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist() == ["DCGAN", "real control"]
    for row in table.to_dict("records"):
        missed, n1 = map(int, row["no face detected"].split("/"))
        found, n2 = map(int, row["face detected"].split("/"))
        assert n1 == n2 == row["N"] and missed + found == row["N"]
        assert row["detection rate"] == pytest.approx(found / row["N"], abs=1e-4)
        assert pd.isna(row["precision"]) or 0 <= row["precision"] <= 1
        assert row[FACES_COLUMN] == found  # face-space numbers rest on the detected faces
    dcgan, real = table.iloc[0], table.iloc[1]
    assert dcgan["N"] == N
    assert real["detection rate"] >= 0.95  # real LFW crops under the protocol
    assert real["relative to real control"] == 1.0
    assert real["Fréchet distance (face enc.)"] == pytest.approx(real["Fréchet noise floor"], abs=1e-4)
    assert real["Fréchet ÷ floor"] == 1.0 and real["SWD ÷ floor"] == 1.0 and real["SWD ×1e3"] > 0
    assert dcgan["SWD ÷ floor"] > 1.5  # noise-like faces: far above the real-vs-real SWD
    steps, kimg, cpu_minutes = dcgan["budget (steps / kimg / CPU-min)"].split(" / ")
    assert (steps, kimg) == ("3", "0.048") and float(cpu_minutes) > 0
    assert real[NOTE_COLUMN] == "" and 0.8 < real["encoding spread"] < 1.2
    assert real["Fréchet noise floor"] > 0 and 0 <= real["memorised (< real p1)"] <= 0.1
    # a 3-step DCGAN makes noise: too few faces detected for any face-space number, and it says so
    assert dcgan[FACES_COLUMN] < MIN_FACES
    for column in ("memorised (< real p1)", "Fréchet distance (face enc.)", "precision", "recall", "encoding spread"):
        assert pd.isna(dcgan[column]), column
    assert f"of {N} faces detected (fewer than {MIN_FACES})" in dcgan[NOTE_COLUMN]
    assert (folder / "table1.md").read_text().count("|") > 20 and (folder / "table1.html").is_file()
    assert len(list((folder / "samples" / "dcgan").glob("*.png"))) == N
    for slug, row in (("dcgan", dcgan), ("real-control", real)):  # which file the protocol found a face in
        found = pd.read_csv(folder / "samples" / slug / "detections.csv")
        assert found["file"].tolist() == [f"{i:06d}.png" for i in range(row["N"])]
        assert found["file"].tolist() == sorted(p.name for p in (folder / "samples" / slug).glob("*.png"))
        assert int(found["face_detected"].sum()) == int(row["face detected"].split("/")[0])
    # and each line is its own file's: detecting a few PNGs again (misses first) gives the same answers
    some = pd.concat([found[~found["face_detected"]].head(3), found[found["face_detected"]].head(3)])
    pngs = np.stack([np.asarray(Image.open(folder / "samples" / "real-control" / f)) for f in some["file"]])
    assert [c > 0 for c in face_counts(pngs, workers=1)] == some["face_detected"].tolist()

    artifacts = set(tracking.list_artifacts(report_run, "report")) | set(tracking.list_artifacts(report_run, "grids"))
    for name in (
        "report/table1.csv",
        "report/table1.md",
        "report/table1.html",
        "report/table1.json",
        "report/bar_chart.png",
        "grids/detected_vs_not_detected.png",
        "grids/dcgan_detected.png",
        "grids/real-control_not_detected.png",
    ):
        assert name in artifacts, f"{name} missing from {sorted(artifacts)}"
    assert "samples/dcgan/detections.csv" in tracking.list_artifacts(report_run, "samples/dcgan")
    metrics = run.data.metrics
    for key in (
        "dcgan.detection_rate",
        "dcgan.face_space_n",
        "real-control.detection_rate",
        "real-control.frechet",
        "real-control.encoding_spread",
        "frechet_noise_floor",
        "memorisation_threshold",
        "control_faces",
    ):
        assert key in metrics
    assert "dcgan.frechet" not in metrics and "dcgan.precision" not in metrics  # not computed: not logged
    assert metrics["dcgan.detection_rate"] == pytest.approx(dcgan["detection rate"], abs=1e-4)


def test_two_checkpoints_of_one_run_get_their_own_rows_and_sample_folders(tiny_run, capfd, monkeypatch, tmp_path):
    """Comparing checkpoints of one run (EMA against raw weights, or two steps): the rows, grids
    and kept PNGs are told apart by file name instead of overwriting each other. The run itself
    is named as `facegan train --name` named it (its MLflow run's generator, not a file)."""
    import shutil

    monkeypatch.setenv("FACEGAN_HOME", str(tiny_run["home"]))
    last = tiny_run["home"] / "runs" / "eval-tiny" / "checkpoints" / "step-000003.pt"
    again = shutil.copy(last, tmp_path / "again.pt")
    args = ("--run", last, again, "eval-tiny", "-n", N, "--max-training", "40")  # a run by its name
    code, out, err = facegan_result(capfd, "evaluate", *args, "--held-out", "0.5", "--keep-pngs")
    assert code == 0, out[-3000:] + err[-3000:]
    folder = tiny_run["home"] / "evaluations" / out.strip().splitlines()[-1].removeprefix("mlflow run: ").strip()
    table = pd.read_csv(folder / "table1.csv", na_values=[MISSING], keep_default_na=False)
    assert table["model"].tolist() == [
        "DCGAN [eval-tiny] step-000003.pt",
        "DCGAN [eval-tiny] again.pt",
        "DCGAN [eval-tiny]",
        "real control",
    ]
    kept = {p.name: len(list(p.glob("*.png"))) for p in (folder / "samples").iterdir() if p.name != "real-control"}
    assert kept == {"dcgan-eval-tiny-step-000003-pt": N, "dcgan-eval-tiny-again-pt": N, "dcgan-eval-tiny": N}


def test_evaluate_bad_input_gives_one_line(capfd, tiny_run, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(tiny_run["home"]))
    for args, expected in (
        (["--run", "0123456789abcdef0123456789abcdef"], "no MLflow run"),
        (["--run", "eval-tiny2"], "no training run of that name under"),
        (["--run", tiny_run["run_id"], "-n", "5"], "--n"),
        (["--run", tiny_run["run_id"], "--dataset", "no-such-set"], "unknown crop dataset"),
        (["--run", tiny_run["run_id"], "--inception-weights", "/nonexistent.pt"], "no such file"),
    ):
        # in-process (test_first_day runs evaluate's own process)
        code, _, err = facegan_result(capfd, "evaluate", *args)
        assert code == 2, (args, err[-2000:])
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert "Traceback" not in err, err[-2000:]
        assert expected in lines[-1], (args, err[-1000:])


def test_optional_inception_fid_column_from_a_local_weights_file(inception_weights, lfw_crops, tmp_path):
    import numpy as np

    from facegan.config.errors import InputError
    from facegan.evaluation.inception import load_inception
    from facegan.evaluation.report import build_table
    from facegan.tasks.evaluating.report import inception_fids
    from facegan.tasks.evaluating.scoring import Scored

    faces = np.load(lfw_crops / "datasets" / "lfw-sample" / "64" / "faces.npy")[:12]
    noise = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    rows = [Scored("noise", noise, np.zeros(6, bool), None, {}), Scored("real", faces[:6], np.ones(6, bool), None, {})]
    entries = [
        {
            "label": r.label,
            "n": 6,
            "detected": int(r.detected.sum()),
            "memorised": 0.0,
            "nearest_mean": 0.5,
            "frechet": 0.1,
            "precision": 1.0,
            "recall": 1.0,
        }
        for r in rows
    ]
    entries = [
        {**e, "inception_fid": fid} for e, fid in zip(entries, inception_fids(inception_weights, rows, faces[6:]))
    ]
    table = build_table(entries[:1], entries[1], 0.1)
    assert list(table.columns) == COLUMNS + [INCEPTION_COLUMN]
    assert np.isfinite(table[INCEPTION_COLUMN]).all() and (table[INCEPTION_COLUMN] >= 0).all()
    bad = tmp_path / "not-weights.pt"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(InputError, match="Inception"):
        load_inception(bad)
