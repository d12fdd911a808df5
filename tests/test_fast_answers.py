"""Issue #25 items 6, 7 and 10 (app store, registry labels; the one dataset check): answers
that came late or said too little.

Each test runs the real `facegan` command: in-process through facegan.flows.cli.main(argv), or in a
subprocess where the process itself is what is tested (its start-up time, which Prefect server
it uses, the privileges it runs with)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, env_without_servers, error_lines, extract_lfw_subset, run_facegan

FAST = ["--workers", "1", "--no-progress"]


def _timed(argv: list[str], env: dict, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    return proc, time.perf_counter() - started


def _closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- item 6: the pipeline's source is checked before Prefect; a running local server is reused ----


@pytest.mark.no_prefect
def test_pipeline_with_an_empty_folder_answers_at_once(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    home = tmp_path / "home"
    proc, seconds = _timed(["pipeline", "--source", tmp_path / "empty"], env_without_servers(home))
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and lines == [
        f"facegan: error: --source '{tmp_path / 'empty'}': folder is empty: {tmp_path / 'empty'}"
    ], proc.stderr
    assert seconds < 5, f"{seconds:.1f} s (was 28 s: a temporary Prefect server started first)"
    assert not home.exists()


def test_a_running_local_prefect_server_is_reused(tmp_path, prefect_server):
    """No PREFECT_API_URL, but a server answers where `prefect server start` listens (its host and
    port settings; here the session's server): the command uses it instead of starting one."""
    from urllib.parse import urlsplit

    import httpx

    photos = extract_lfw_subset(tmp_path / "photos" / "few", 3)
    env = env_without_servers(tmp_path / "home")
    env.update(
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(urlsplit(prefect_server).port),
        MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"],
        PREFECT_PROFILES_PATH=str(tmp_path / "none.toml"),
    )
    proc, _ = _timed(["acquire", "--path", photos, "--name", "reused", *FAST], env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting temporary server" not in proc.stderr
    assert f"prefect: using the Prefect server running at {prefect_server}" in proc.stderr
    runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={"limit": 200}).json()
    assert any(r["parameters"].get("config", {}).get("name") == "reused" for r in runs), "flow run not in the server"


# --- item 7: a bad FACEGAN_HOME or MLFLOW_TRACKING_URI: one line naming the variable, at once ----


@pytest.mark.no_prefect
def test_facegan_home_a_file_is_one_line_naming_the_variable(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"x")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    proc, seconds = _timed(["acquire", "--path", photos], env_without_servers(afile))
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        f"facegan: error: FACEGAN_HOME={afile} is a file, not a folder: point FACEGAN_HOME at a folder "
        "(made when missing)"
    ], proc.stderr
    assert seconds < 5, f"{seconds:.1f} s (was 22 s and a 90-line traceback)"
    # a home below a file cannot be made either (in-process: the same check)
    monkeypatch.setenv("FACEGAN_HOME", str(afile / "home"))
    code, _, err = run_facegan(capsys, "crop")
    assert code == 2 and error_lines(err) == [
        f"facegan: error: FACEGAN_HOME={afile / 'home'} cannot be made: {afile} is a file, not a folder: "
        "point FACEGAN_HOME at a folder (made when missing)"
    ], err


@pytest.mark.no_prefect
def test_an_unreachable_tracking_server_is_one_line_naming_the_variable(tmp_path, capsys, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"x")
    home = tmp_path / "home"
    uri = f"http://127.0.0.1:{_closed_port()}"
    proc, seconds = _timed(["acquire", "--path", photos], {**env_without_servers(home), "MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        f"facegan: error: MLFLOW_TRACKING_URI={uri}: no MLflow server answers (Connection refused): start it, "
        "or unset MLFLOW_TRACKING_URI to track in $FACEGAN_HOME/mlflow.db"
    ], proc.stderr
    assert seconds < 5, f"{seconds:.1f} s (MLflow's client retried for more than 120 s)"
    assert not home.exists()

    # a server that accepts connections but never answers: the probe's timeout, not MLflow's retries
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("FACEGAN_HOME", str(home))
        started = time.perf_counter()
        code, _, err = run_facegan(capsys, "train", "--steps", "1")
        assert time.perf_counter() - started < 5
    lines = error_lines(err)
    assert (
        code == 2
        and len(lines) == 1
        and "MLFLOW_TRACKING_URI=http://127.0.0.1:" in lines[0]
        and "no MLflow server answers (timed out)" in lines[0]
    ), err


# --- item 10: `facegan app` makes no store; registered versions say what they are ----------------


@pytest.mark.no_prefect
def test_app_without_a_store_creates_none(tmp_path, capsys, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEGAN_HOME")  # the default: ./facegan-data where it is started
    code, _, err = run_facegan(capsys, "app")
    assert code == 2 and error_lines(err) == [
        f"facegan: error: no MLflow store at {tmp_path / 'facegan-data' / 'mlflow.db'}: no model registered yet "
        "(train one with `facegan train`, or set FACEGAN_HOME or MLFLOW_TRACKING_URI)"
    ], err
    at = AppTest.from_file(str(REPO / "flows" / "app_page.py"), default_timeout=120).run()  # started directly
    assert not at.exception and "No MLflow store at" in at.warning[0].value
    assert list(tmp_path.iterdir()) == []


def test_registered_versions_carry_model_size_kimg_and_dataset(tmp_path, capsys, facegan_home):
    from facegan.tasks.common import tracking

    photos = extract_lfw_subset(tmp_path / "photos", 12)
    assert run_facegan(capsys, "acquire", "--path", photos, "--name", "regset", *FAST)[0] == 0
    assert run_facegan(capsys, "crop", "--raw", "regset", "--sizes", "48", "--largest-only", "--workers", "1")[0] == 0
    code, out, err = run_facegan(
        capsys,
        "train",
        "--dataset",
        "regset",
        "--size",
        "48",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--features",
        "8",
        "--threads",
        "1",
        "--score-every",
        "0",
        "--name",
        "regset-tags",
    )
    assert code == 0, err
    (run,) = tracking.find_runs("train", "attributes.run_name = 'regset-tags'")
    name, version = run.data.tags["facegan.registered_model"], run.data.tags["facegan.model_version"]
    assert name == "facegan-dcgan-48"
    mv = tracking.store._client().get_model_version(name, version)
    assert (
        mv.tags.items()
        >= {
            "model": "dcgan",
            "size": "48",
            "kimg": "0.01",
            "steps": "2",
            "dataset": "regset",
            "recipe": "default",
        }.items()
    )
    assert mv.description == "dcgan at 48 px, 0.01 kimg (2 steps) on dataset regset, recipe default"


@pytest.mark.no_prefect
def test_one_dataset_check_answers_for_the_preflight_and_the_train_task(tmp_path, monkeypatch):
    """Issue 24: a training dataset is checked by one function, called by the CLI's preflight and by
    the train task (a deployment's run has no preflight): the same line from both, and the task's
    comes before any run folder exists."""
    from facegan.config.errors import InputError
    from facegan.config.train import TrainConfig
    from facegan.flows import preflight
    from facegan.tasks.training import lifecycle
    from facegan.tasks.training.inputs import TrainingSet, check_training_set

    monkeypatch.setenv("FACEGAN_HOME", str(tmp_path / "home"))
    folder = tmp_path / "tiny" / "48"
    folder.mkdir(parents=True)
    np.save(folder / "faces.npy", np.zeros((3, 48, 48, 3), np.uint8))
    np.save(tmp_path / "tiny" / "empty.npy", np.zeros((0, 48, 48, 3), np.uint8))
    base = dict(dataset=str(folder), size=48, steps=1)
    assert check_training_set(TrainConfig(**base, batch_size=3)) == TrainingSet("tiny", folder.resolve(), 3)
    cases = [
        (TrainConfig(**base, batch_size=4), "--batch-size 4 is larger than dataset 'tiny' at 48 px (3 crops)"),
        (TrainConfig(**base, batch_size=2, clusters=4), "--clusters 4: dataset 'tiny' at 48 px has 3 crops, too few"),
        (TrainConfig(**{**base, "size": 64}, batch_size=2), "expected uint8 (N, 64, 64, 3): wrong --size"),
    ]
    for config, message in cases:
        answers = []
        for check in (preflight.train, lifecycle.prepare_run):
            with pytest.raises(InputError) as caught:
                check(config)
            answers.append(str(caught.value))
        assert answers[0] == answers[1] and message in answers[0], answers
    (folder / "faces.npy").unlink()
    (tmp_path / "tiny" / "empty.npy").rename(folder / "faces.npy")
    with pytest.raises(InputError, match="dataset 'tiny' \\(48 px\\) is empty: no crops to train on"):
        lifecycle.prepare_run(TrainConfig(**base, batch_size=1))
    assert not (tmp_path / "home" / "runs").exists()
