"""Issue #13 items that need a trained run: the dataset version a run saw and evaluate's check of
it (3), the identity source and the split's counts (4), train naming its dataset (7), registered
models named in the report (12), train without registration (14). Every step is the real
`facegan` command run in-process through facegan.flows.cli.main; tiny sizes (48 px, 2 steps, N=20)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import extract_lfw_subset, run_facegan

from facegan.flows.cli import main as facegan

TINY_TRAIN = ["--size", "48", "--steps", "2", "--batch-size", "8", "--features", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A data home with raw set and dataset 'faces' (60 LFW photos, 48 px) and one registered
    2-step DCGAN run, all made by the real commands."""
    home = tmp_path_factory.mktemp("first-day-home")
    photos = extract_lfw_subset(tmp_path_factory.mktemp("photos") / "lfw-mini", 60)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACEGAN_HOME", str(home))
        facegan(["acquire", "--path", str(photos), "--name", "faces", "--workers", "1", "--no-progress"])
        facegan(["crop", "--raw", "faces", "--sizes", "48", "--workers", "1"])
        from facegan.config.train import TrainConfig
        from facegan.flows.train import train

        run_id = train(TrainConfig(dataset="faces", size=48, steps=2, batch_size=8, features=8, threads=1))
    return {"home": home, "photos": photos, "run_id": run_id}


@pytest.fixture
def home(trained, monkeypatch) -> Path:
    monkeypatch.setenv("FACEGAN_HOME", str(trained["home"]))
    return trained["home"]


def test_a_run_records_the_dataset_version_it_saw(trained, home):
    from facegan.tasks.common import tracking
    from facegan.tasks.training.data import dataset_fingerprint

    run = tracking.get_run(trained["run_id"])
    fingerprint = dataset_fingerprint(home / "datasets" / "faces" / "48")
    assert run.data.params["dataset_fingerprint"] == fingerprint
    assert run.data.tags["facegan.dataset_fingerprint"] == fingerprint


def test_evaluate_names_the_registered_model_and_the_split(capsys, trained, home):
    from facegan.tasks.common import tracking

    version = tracking.get_run(trained["run_id"]).data.tags["facegan.model_version"]
    uri = f"models:/facegan-dcgan-48/{version}"
    code, out, err = run_facegan(
        capsys,
        "evaluate",
        "--run",
        uri,
        "-n",
        "20",
        "--max-training",
        "20",
        "--held-out",
        "0.5",
        "--workers",
        "1",
        "--no-keep-pngs",
    )
    assert code == 0, err
    assert f"| {uri} |" in out  # the row names what was evaluated
    report = Path(out.split("report: ")[1].splitlines()[0])
    notes = (report / "table1.md").read_text()
    assert "Held-out split: by identity: " in notes and " identities held out (" in notes
    assert "crops left for training" in notes
    assert "the version every run trained on" in notes


def test_evaluate_refuses_a_real_control_from_a_recropped_dataset(capsys, trained, home):
    from facegan.tasks.common import tracking

    before = {r.info.run_id for r in tracking.find_runs("evaluate")}
    # re-crop the same raw set with other options: datasets/faces/48 is replaced
    code, _, err = run_facegan(capsys, "crop", "--raw", "faces", "--sizes", "48", "--min-face", "90", "--workers", "1")
    assert code == 0, err
    code, _, err = run_facegan(capsys, "evaluate", "--run", trained["run_id"], "-n", "20", "--workers", "1")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("facegan: error:")]
    assert len(lines) == 1 and "was trained on another version of" in lines[0]
    assert "re-cropped since" in lines[0] and "--allow-changed-dataset" in lines[0]
    assert {r.info.run_id for r in tracking.find_runs("evaluate")} == before  # no run left behind
    # put the original version back for the other tests
    assert run_facegan(capsys, "crop", "--raw", "faces", "--sizes", "48", "--workers", "1")[0] == 0


def test_train_names_its_dataset_and_says_when_nothing_is_registered(capfd, trained, home):
    capsys = capfd  # the flow's print goes through Prefect's console handler: capture at the fd level
    code, _, err = run_facegan(capsys, "train", *TINY_TRAIN, "--batch-size", "4096")
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [
        "facegan: error: --batch-size 4096 is larger than dataset 'faces' at 48 px "
        f"({len(__import__('numpy').load(home / 'datasets/faces/48/faces.npy', mmap_mode='r'))} crops): "
        "lower --batch-size or crop more images"
    ]
    code, out, err = run_facegan(capsys, "train", *TINY_TRAIN, "--no-register-model", "--seed", "1")
    assert code == 0, err
    assert "train: dataset 'faces' at 48 px" in err and "(the most recent; --dataset NAME to pick another)" in err
    # (the flow's closing line, "model not registered (--no-register-model)", is a Prefect INFO log,
    # which this test session's PREFECT_LOGGING_LEVEL=WARNING hides)
    assert "vNone" not in out + err


def test_identity_is_explicit(capsys, trained, home):
    code, _, err = run_facegan(
        capsys,
        "acquire",
        "--path",
        trained["photos"],
        "--name",
        "albums",
        "--identity",
        "none",
        "--workers",
        "1",
        "--no-progress",
    )
    assert code == 0, err
    assert pd.read_parquet(home / "raw" / "albums" / "manifest.parquet")["identity"].isna().all()
    # auto: LFW's <Name>/<Name>_0001.jpg is one person per folder
    people = pd.read_parquet(home / "raw" / "faces" / "manifest.parquet")["identity"]
    assert people.notna().all() and people.nunique() > 5
