"""Issue #25 items 6, 7, 8, 10 (app store, registry labels), 11 and 12 (help, crop counts): answers
that came late, said too little or praised a 1x1 pixel.

Each test runs the real `facegan` command: in-process through facegan.flows.cli.main(argv), or in a
subprocess where the process itself is what is tested (its start-up time, which Prefect server
it uses, the privileges it runs with)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, env_without_servers, error_lines, extract_lfw_subset, run_facegan, shared
from PIL import Image

from facegan.testing import LoopbackServer, Route

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
