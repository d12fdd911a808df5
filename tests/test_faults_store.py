"""Issue 25 item 1: a first command killed while MLflow creates its store (SIGKILL, SIGTERM, Ctrl-C,
a file size limit) never bricks FACEGAN_HOME, and a killed command leaves no temporary Prefect
server behind. The real `facegan acquire` in subprocesses on a fresh home, without the session's
Prefect server and MLflow store (env_without_servers), as a user's first command runs."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, env_without_servers, error_lines, extract_lfw_subset, run_facegan


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """The real command, in exactly this environment (conftest.run_cli adds the session's servers)."""
    return subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _start(args: list[str], env: dict, log: Path, preexec=None) -> subprocess.Popen:
    # output to a file, not a pipe: a server left behind would hold a pipe open and hang the test
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "facegan.flows.cli", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
        )


def _wait_for(condition, proc: subprocess.Popen, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, f"the command ended ({proc.returncode}) before {what}"
        time.sleep(0.01)
    raise AssertionError(f"no {what} after {timeout} s")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie is dead; only its parent's wait() is missing


def _uvicorn_child(pid: int) -> int | None:
    for child in _children(pid):
        try:
            if b"uvicorn" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            pass
    return None


def _store_runs(home: Path, status: str | None = None) -> set[str]:
    import sqlite3

    con = sqlite3.connect(home / "mlflow.db")
    try:
        sql = "SELECT run_uuid FROM runs" + (" WHERE status = ?" if status else "")
        return {row[0] for row in con.execute(sql, (status,) if status else ())}
    finally:
        con.close()


@pytest.mark.slow
@pytest.mark.no_prefect
def test_a_first_command_killed_at_any_point_never_bricks_the_store(tmp_path):
    photos = extract_lfw_subset(tmp_path / "photos" / "lfw-6", 6)
    home = tmp_path / "home"
    env = env_without_servers(home)
    args = ["acquire", "--path", str(photos), "--name", "six", "--workers", "1", "--no-progress"]
    partial = lambda: list(home.glob(".mlflow.db.*.part"))  # noqa: E731 - the store being built

    # killed while MLflow creates and migrates the store: at once (SIGKILL), later (SIGTERM, Ctrl-C)
    for sig, delay in ((signal.SIGKILL, 0.0), (signal.SIGTERM, 0.3), (signal.SIGINT, 0.8)):
        proc = _start(args, env, tmp_path / f"killed-{sig.name}.log")
        _wait_for(partial, proc, 300, "store under construction")
        time.sleep(delay)
        proc.send_signal(sig)
        proc.wait(timeout=300)
        log = (tmp_path / f"killed-{sig.name}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        # never a half-made store under the real name: none yet, or a complete one
        assert not (home / "mlflow.db").exists() or isinstance(_store_runs(home), set)

    # a full disk (a file size limit) while the store is made: one line naming the path and the disk
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # noqa: E731
    (home / "mlflow.db").unlink(missing_ok=True)  # a store made above would be too big to need more room
    proc = _start(args, env, tmp_path / "full.log", preexec=limit)
    assert proc.wait(timeout=300) == 2
    lines = error_lines((tmp_path / "full.log").read_text())
    assert len(lines) == 1 and lines[0].startswith(
        f"facegan: error: cannot create the MLflow store "
        f"{home / 'mlflow.db'}: the disk is full or a file size "
        "limit is set ("
    ), lines
    assert "64 KiB (ulimit -f)" in lines[0] and "free on the disk mounted at" in lines[0]
    assert not (home / "mlflow.db").exists() and not partial()

    # then the same command succeeds
    first = _run(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    finished = _store_runs(home, "FINISHED")
    assert len(finished) == 1

    # killed once the store exists, while its temporary Prefect server runs: the server dies with it
    proc = _start(args, env, tmp_path / "server.log")
    server = _wait_for(lambda: _uvicorn_child(proc.pid), proc, 300, "temporary Prefect server")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=300)
    deadline = time.monotonic() + 30
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server), f"the temporary Prefect server (pid {server}) outlived its killed command"

    # and again the same command succeeds; every run that completed is still in the store
    again = _run(args, env)
    assert again.returncode == 0, again.stderr[-3000:]
    now = _store_runs(home, "FINISHED")
    assert finished < now and len(now) == 2


def test_a_half_made_store_of_an_older_facegan_is_rebuilt(capsys, tmp_path, facegan_home, monkeypatch):
    """A store killed in the middle of MLflow's migrations (what an older facegan left behind: the
    DDL of one migration done, its revision not recorded; every later command failed on it, for
    good) holds no runs: the next command builds it again."""
    import sqlite3

    from facegan.tasks.common import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FACEGAN_MLFLOW_ARTIFACTS", raising=False)
    facegan_home.mkdir(parents=True)
    store = facegan_home / "mlflow.db"
    tracking.store._build_store(store)
    with sqlite3.connect(store) as con:  # the revision before 'add storage_location': the kill's state
        con.execute("UPDATE alembic_version SET version_num = '2d6e25af4d3e'")
    con.close()
    photos = extract_lfw_subset(tmp_path / "photos" / "lfw-3", 3)
    code, out, err = run_facegan(
        capsys, "acquire", "--path", photos, "--name", "three", "--workers", "1", "--no-progress"
    )
    assert code == 0, err
    assert len(_store_runs(facegan_home, "FINISHED")) == 1


@pytest.mark.no_prefect
def test_an_interrupt_wrapped_by_pydantic_while_prefect_imports_is_still_an_interrupt():
    """Ctrl-C or SIGTERM during Prefect's import lands inside pydantic-core's serializer (Prefect
    dumps its settings), which re-raises it as PydanticSerializationError: the CLI must still
    answer in one line (a killed first command printed a 40-line traceback under load)."""
    from pydantic import BaseModel, model_serializer

    from facegan.flows import cli_errors

    def serialised_while(raising: BaseException) -> Exception:
        class Settings(BaseModel):
            value: int = 1

            @model_serializer(mode="wrap")
            def _dump(self, handler):
                raise raising

        try:
            Settings().model_dump()
        except Exception as exc:  # what reaches the CLI: not a KeyboardInterrupt any more
            assert not isinstance(exc, KeyboardInterrupt)
            return exc
        raise AssertionError("pydantic did not raise")

    ctrl_c = cli_errors.wrapped_interrupt(serialised_while(KeyboardInterrupt()))
    assert type(ctrl_c) is KeyboardInterrupt
    sigterm = cli_errors.wrapped_interrupt(serialised_while(cli_errors.Interrupted(cli_errors.TERMINATED)))
    assert isinstance(sigterm, cli_errors.Interrupted) and str(sigterm) == cli_errors.TERMINATED
    assert cli_errors.wrapped_interrupt(serialised_while(ValueError("a real bug"))) is None
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise RuntimeError("cleanup failed") from inner
    except RuntimeError as chained:
        assert type(cli_errors.wrapped_interrupt(chained)) is KeyboardInterrupt


@pytest.mark.slow
def test_a_full_disk_while_a_dataset_is_assembled_is_one_line_and_the_rerun_completes(tmp_path):
    """The disk fills up while `facegan crop` writes a dataset's faces.npy (here a file size
    limit: numpy's short write raises an OSError without an errno, which used to end in a
    traceback and exit 1): one line naming the disk, nothing half-written under the dataset's
    name, and the same command, with room again, completes the dataset from the shards it had."""
    import numpy as np

    photos = extract_lfw_subset(tmp_path / "photos" / "lfw-60", 60)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # a store in home
    env["FACEGAN_HOME"] = str(home)
    acquired = _run(["acquire", "--path", str(photos), "--name", "sixty", "--workers", "1", "--no-progress"], env)
    assert acquired.returncode == 0, acquired.stderr[-3000:]
    assert (home / "mlflow.db").stat().st_size < 1536 * 1024  # the limit below leaves the store room

    crop = ["crop", "--raw", "sixty", "--sizes", "128", "--largest-only", "--workers", "1"]
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1536 * 1024, 1536 * 1024))  # noqa: E731
    proc = _start(crop, env, tmp_path / "full.log", preexec=limit)
    assert proc.wait(timeout=600) == 2
    log = (tmp_path / "full.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in error_lines(log) if line.startswith("facegan:")]
    assert len(lines) == 1 and lines[0].startswith(
        f"facegan: error: cannot write {home}: the disk is full or a file size limit is set ("
    ), log[-3000:]
    assert "1536 KiB (ulimit -f)" in lines[0] and "free on the disk mounted at" in lines[0]
    dataset = home / "datasets" / "sixty"
    assert not (dataset / "128").exists() and not list(dataset.rglob(".*.part"))

    again = _run(crop, env)
    assert again.returncode == 0, again.stderr[-3000:]
    faces = np.load(dataset / "128" / "faces.npy", mmap_mode="r")
    assert faces.shape[1:] == (128, 128, 3) and len(faces) >= 50  # one per photo, where Haar found it
    assert faces.nbytes > 1536 * 1024 and len(list((dataset / "128").glob("[0-9]*.png"))) == len(faces)
    assert sorted(p.name for p in dataset.iterdir()) == ["128"]  # no staging or shard folders left


@pytest.mark.slow
def test_a_run_whose_command_was_killed_is_marked_killed_by_the_next_command(tmp_path, monkeypatch):
    """SIGKILL leaves no chance to close the MLflow run: it stayed RUNNING for ever in the UI. The
    next command on this host finds its process gone and marks it KILLED, saying why; a run of a
    live process is left alone."""
    from facegan.tasks.common.tracking.owners import ENDED_TAG, ORPHAN_NOTE, PROCESS_TAG, is_alive

    photos = extract_lfw_subset(tmp_path / "photos" / "lfw-40", 40)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # a store in home
    env["FACEGAN_HOME"] = str(home)
    args = ["acquire", "--path", str(photos), "--name", "forty", "--workers", "1", "--no-progress"]
    first = _run(args, env)
    assert first.returncode == 0, first.stderr[-3000:]
    finished = _store_runs(home, "FINISHED")

    proc = _start([*args[:4], "again", *args[5:]], env, tmp_path / "killed.log")
    running = _wait_for(lambda: _store_runs(home, "RUNNING"), proc, 300, "a RUNNING run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert _store_runs(home, "RUNNING") == running  # what SIGKILL leaves

    # a run of a live process meanwhile: this test's own (a paused facegan could hold the store's
    # write lock, and the next command would wait on it)
    from facegan.tasks.common import tracking

    monkeypatch.setenv("FACEGAN_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    live = tracking.start_run("acquire", run_name="live")
    again = _run([*args[:4], "again", *args[5:]], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _store_runs(home, "RUNNING") == {live.run_id}  # the live one was not touched
    live.finish()
    assert _store_runs(home, "KILLED") == running and finished < _store_runs(home, "FINISHED")

    import sqlite3

    con = sqlite3.connect(home / "mlflow.db")
    try:
        tags = dict(con.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (next(iter(running)),)))
    finally:
        con.close()
    assert tags[ENDED_TAG] == ORPHAN_NOTE and tags[PROCESS_TAG].startswith(f"{proc.pid}:")
    assert not is_alive(tags[PROCESS_TAG]) and is_alive(f"{os.getpid()}:")
