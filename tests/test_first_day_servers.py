"""Issue #13, a new user's first day: the `ui` and `serve` commands as processes (they start
servers): refused at once without what they need, on loopback, stopping cleanly on a signal.
The one-line rejections of the other commands are in test_first_day.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, env_without_servers, error_lines


@pytest.mark.no_prefect
def test_ui_refuses_a_store_that_does_not_exist(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", "ui"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without_servers(home),
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        f"facegan: error: no MLflow store at {home / 'mlflow.db'}: nothing "
        "tracked yet (run a facegan command first, or set FACEGAN_HOME or "
        "MLFLOW_TRACKING_URI)"
    ]
    assert not home.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_facegans_store_on_loopback_and_stops_on_sigterm(tmp_path, monkeypatch):
    """`facegan ui` serves the store under FACEGAN_HOME (not ./facegan-data), opens on the
    facegan experiment, and stops cleanly within 10 s of SIGTERM."""
    import json
    import signal
    import urllib.request

    from facegan.tasks.common import tracking

    home = tmp_path / "home"
    monkeypatch.setenv("FACEGAN_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("FACEGAN_MLFLOW_ARTIFACTS")
    with tracking.run("crop", run_name="seen-in-the-ui"):
        pass
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegan.flows.cli", "ui", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_without_servers(home),
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"MLflow UI on http://127.0.0.1:{port}/#/experiments/")
        assert f"store sqlite:///{home / 'mlflow.db'}" in first
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the UI never came up"
                time.sleep(0.5)
        url = (
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name={tracking.EXPERIMENT}"
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            experiment = json.load(response)["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert not (REPO / "facegan-data").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # a UI that ignores SIGTERM fails here
    assert proc.returncode == 0, err[-2000:]
    assert "MLflow UI stopped" in out and "Traceback" not in err


# --- item 13: facegan serve says where it serves, needs a reachable server, stops cleanly -------


@pytest.mark.no_prefect
def test_serve_without_a_prefect_server_is_refused_at_once(tmp_path):
    env = env_without_servers(tmp_path / "home")
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # no profile that sets PREFECT_API_URL
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 2 and "Starting temporary server" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("facegan: error: facegan serve needs a Prefect server")
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in lines[0]
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{_free_port()}/api"
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert error_lines(proc.stderr)[0].startswith(
        f"facegan: error: no Prefect server answers at PREFECT_API_URL={env['PREFECT_API_URL']}"
    )
    assert not (tmp_path / "home").exists()


def test_serve_says_where_it_serves_and_stops_within_10_s(tmp_path):
    """On the session's Prefect server (PREFECT_API_URL): registers the deployments, prints the
    server and how to run one, and a SIGTERM stops it cleanly (its shutdown awaited, exit 0)."""
    import signal

    from prefect.client.orchestration import get_client

    env = {**os.environ, "FACEGAN_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegan.flows.cli", "serve", "--paused"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith(
            "facegan serve: 5 deployments (face-pipeline/nightly, acquire/on-demand, "
            "crop/on-demand, train/gpu, evaluate/on-demand) on the Prefect server at "
            f"{os.environ['PREFECT_API_URL']}"
        ), first
        assert "prefect deployment run 'crop/on-demand'" in proc.stdout.readline()
        deadline = time.monotonic() + 240
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name("crop/on-demand")
                    break
                except Exception:  # noqa: BLE001 - not registered yet
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
                    time.sleep(1)
        time.sleep(3)  # the runner is polling now
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)  # a serve that ignores SIGTERM fails here
    assert "Traceback" not in err and "ConnectError" not in err, err[-2000:]
    assert "never awaited" not in err, err[-2000:]  # Prefect's own SIGTERM handler left Runner.astop unawaited
    assert proc.returncode == 0 and out.rstrip().endswith("facegan serve: stopped"), (proc.returncode, out[-500:])


# --- item 7: the pipeline's offline hint names its own flag -------------------------------------
