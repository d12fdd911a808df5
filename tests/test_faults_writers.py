"""Issue 25 items 2 and 3: one writer per training run and per crop dataset (the second gets one
line naming the first's pid, exit 2; a killed writer's lock is taken over), and Ctrl-C or SIGTERM:
one line saying where it stopped and how to resume, the MLflow run KILLED, the Prefect flow run
Cancelled, exit 130, no "Crash detected". `facegan serve` stops on SIGTERM without an unawaited
coroutine. The real `facegan` command: in subprocesses where signals and concurrency are what is
tested, in-process through the CLI otherwise; 120 LFW photos, 48 px, 8 features."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO, error_lines, extract_lfw_subset, run_facegan, shared

pytestmark = pytest.mark.slow

TRAIN = [
    "train",
    "--dataset",
    "faces",
    "--size",
    "48",
    "--name",
    "race",
    "--batch-size",
    "8",
    "--features",
    "8",
    "--threads",
    "1",
    "--log-every",
    "1",
    "--checkpoint-every",
    "5",
    "--sample-every",
    "1000",
    "--score-every",
    "0",
    "--no-register-model",
]
CROP = ["crop", "--raw", "faces", "--name", "racecrop", "--sizes", "48", "--workers", "1", "--shard-size", "10"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """Raw set and dataset 'faces' (120 LFW photos, 48 px), made by the real commands."""
    from facegan.flows.cli import main as facegan

    home = tmp_path_factory.mktemp("writers-home")
    photos = extract_lfw_subset(tmp_path_factory.mktemp("photos") / "lfw-120", 120)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACEGAN_HOME", str(home))
        facegan(["acquire", "--path", str(photos), "--name", "faces", "--workers", "1", "--no-progress"])
        facegan(["crop", "--raw", "faces", "--sizes", "48", "--workers", "1"])
    return home


def _env(home: Path) -> dict:
    return {**os.environ, "FACEGAN_HOME": str(home)}


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "facegan.flows.cli", *args],
            cwd=REPO,
            env=_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_for(condition, proc: subprocess.Popen, log: Path, what: str, timeout: float = 400):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"ended ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {timeout} s")


def _holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*.pt"))


def _cancelled_flow_runs(flow: str, since: datetime) -> list:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
        names = {f.id: f.name for f in client.read_flows(limit=200)}
    return [r for r in runs if names.get(r.flow_id) == flow and r.state_name == "Cancelled" and r.created >= since]


def test_one_trainer_per_run_and_ctrl_c_stops_it_in_one_line(home, tmp_path, capsys, monkeypatch):
    from facegan.tasks.common import tracking

    monkeypatch.setenv("FACEGAN_HOME", str(home))  # for the in-process command at the end
    since = datetime.now(UTC)
    lock, run_dir = home / "runs" / ".locks" / "race.lock", home / "runs" / "race"
    first = _start([*TRAIN, "--steps", "100000"], home, tmp_path / "first.log")
    _wait_for(lambda: _holder(lock) == first.pid, first, tmp_path / "first.log", "lock taken")

    # a second trainer of the same run: one line naming the first, exit 2, before Prefect starts
    started = time.perf_counter()
    second = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *TRAIN, "--resume", "--steps", "100000"],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    second_s = time.perf_counter() - started
    assert second.returncode == 2
    assert error_lines(second.stderr) == [
        f"facegan: error: run 'race' is being trained by pid {first.pid}: wait "
        "for it to finish or stop it, then run this again"
    ], second.stderr
    print(f"second trainer refused in {second_s:.1f} s")

    # Ctrl-C: one line with the step and the resume command, KILLED, Cancelled, exit 130
    _wait_for(lambda: _steps(run_dir), first, tmp_path / "first.log", "checkpoint")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) == 130
    log = (tmp_path / "first.log").read_text()
    assert "Crash detected" not in log and "Traceback" not in log, log[-3000:]
    line = error_lines(log)[-1]
    match = re.fullmatch(
        r"facegan: interrupted at step (\d+) of run race \(resumes from step (\d+)\); resume with: "
        r"facegan (.*)",
        line,
    )
    assert match, log[-3000:]
    assert int(match[1]) >= int(match[2]) == _steps(run_dir)[-1]
    assert match[3] == " ".join([*TRAIN, "--steps", "100000"])
    assert [x for x in error_lines(log) if x.startswith("facegan")] == [line]
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    assert tracking.get_run(run_id).info.status == "KILLED"
    assert _cancelled_flow_runs("train", since)

    # SIGTERM (kill, a scheduler, a container stop) lands in Prefect's own handler while the flow
    # runs (its TerminationSignal, not a KeyboardInterrupt): still KILLED, where it stopped, exit 143
    termed = _start([*TRAIN, "--steps", "100000"], home, tmp_path / "termed.log")
    before = _steps(run_dir)[-1]
    _wait_for(lambda: _steps(run_dir)[-1] > before, termed, tmp_path / "termed.log", "a checkpoint of the resumed run")
    termed.send_signal(signal.SIGTERM)
    assert termed.wait(timeout=300) == 143
    log = (tmp_path / "termed.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert re.fullmatch(
        r"facegan: terminated \(SIGTERM\) at step \d+ of run race \(resumes from step (\d+)\); resume with: facegan .*",
        error_lines(log)[-1],
    ), log[-3000:]
    assert tracking.get_run(run_id).info.status == "KILLED"  # it was FAILED before session 40

    # a trainer killed outright (SIGKILL) leaves a stale lock: the next one takes it over
    killed = _start([*TRAIN, "--steps", "100000"], home, tmp_path / "killed.log")
    before = _steps(run_dir)[-1]
    _wait_for(
        lambda: _holder(lock) == killed.pid and _steps(run_dir)[-1] > before,
        killed,
        tmp_path / "killed.log",
        "a checkpoint of the resumed run",
    )
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=300)
    assert _holder(lock) == killed.pid  # the file still names the dead process; the kernel freed the lock
    last = _steps(run_dir)[-1]
    code, out, err = run_facegan(capsys, *TRAIN, "--steps", str(last + 2))
    assert code == 0, err
    assert _steps(run_dir)[-1] == last + 2
    assert tracking.get_run(run_id).info.status == "FINISHED"


def test_one_crop_per_dataset_and_ctrl_c_leaves_nothing_behind(home, tmp_path, capsys, monkeypatch):
    from facegan.tasks.common import tracking

    monkeypatch.setenv("FACEGAN_HOME", str(home))  # for the in-process command at the end
    lock, root = home / "datasets" / ".locks" / "racecrop.lock", home / "datasets" / "racecrop"
    first = _start(CROP, home, tmp_path / "first.log")
    _wait_for(lambda: _holder(lock) == first.pid, first, tmp_path / "first.log", "lock taken")

    second = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *CROP],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 2
    assert error_lines(second.stderr) == [
        f"facegan: error: dataset 'racecrop' is being cropped by pid {first.pid}: "
        "wait for it to finish or stop it, then run this again"
    ], second.stderr

    _wait_for(lambda: list((root / ".work").glob("shard-*.npz")), first, tmp_path / "first.log", "a shard")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=300) == 130
    log = (tmp_path / "first.log").read_text()
    assert "Crash detected" not in log and "Traceback" not in log, log[-3000:]
    assert [x for x in error_lines(log) if x.startswith("facegan")] == [
        f"facegan: interrupted; resume with: facegan {' '.join(CROP)}"
    ], log[-3000:]
    killed = [r for r in tracking.find_runs("crop") if r.info.run_name == "crop-racecrop"]
    assert [r.info.status for r in killed] == ["KILLED"]

    # the same command resumes (the shards done are kept) and leaves no .work folder
    code, out, err = run_facegan(capsys, *CROP)
    assert code == 0, err
    assert (root / "48" / "faces.npy").is_file() and not (root / ".work").exists()
    assert not list(root.glob(".*"))


def test_one_acquire_per_raw_set_and_a_busy_one_leaves_the_other_whole(tmp_path, capsys, monkeypatch):
    """Two imports into one raw set at once once left 7,305 of LFW's rows "unreadable" (the first
    to finish cleared the other's half-extracted archive) and a rerun did not repair them. Now the
    second is refused in one line, by the CLI and by the flow itself (a deployment), and the first
    ends whole."""
    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire
    from facegan.tasks.acquisition import manifest
    from facegan.tasks.common.locks import BusyError

    home = tmp_path / "home"
    monkeypatch.setenv("FACEGAN_HOME", str(home))
    lfw = shared("archives", "lfw-deepfunneled.tgz")
    photos = extract_lfw_subset(tmp_path / "photos" / "few", 20)
    small = shutil.make_archive(str(tmp_path / "few"), "zip", photos.parent)
    lock, raw = home / "raw" / ".locks" / "twice.lock", home / "raw" / "twice"
    first = _start(["acquire", "--path", str(lfw), "--name", "twice", "--no-progress"], home, tmp_path / "first.log")
    _wait_for(lambda: _holder(lock) == first.pid, first, tmp_path / "first.log", "lock taken")

    busy = (
        f"raw set 'twice' is being acquired by pid {first.pid}: wait for it to finish or stop it, then run this again"
    )
    second = ["acquire", "--path", small, "--name", "twice", "--no-progress"]
    code, _, err = run_facegan(capsys, *second)
    assert (code, error_lines(err)) == (2, [f"facegan: error: {busy}"])
    with pytest.raises(BusyError, match=re.escape(busy)):  # a deployment runs the flow without the CLI's check
        acquire(AcquireConfig(path=small, name="twice"))
    assert first.poll() is None, "the first import ended before the second was refused: the test proves nothing"

    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    rows = manifest.read(raw)
    assert (rows["status"] == "ok").sum() == 13233 and (rows["status"] == "failed").sum() == 0
    assert not list(raw.glob(".staging-*"))
    code, _, err = run_facegan(capsys, *second)  # once the first is done, the second goes in beside it
    assert code == 0, err
    rows = manifest.read(raw)
    assert (rows["status"] != "failed").all() and rows["url"].str.contains("few.zip#").sum() == 20
