"""Screenshot of the MLflow UI on an evaluate run's Table 1 report, in headless Chromium.

    .venv/bin/python infra/screenshot_mlflow.py                     # newest evaluate run -> mlflow-report.png
    .venv/bin/python infra/screenshot_mlflow.py --run <run id> --out shot.png
    .venv/bin/python infra/screenshot_mlflow.py --ui http://127.0.0.1:5000   # an MLflow UI already running

Without --ui it starts `mlflow server` on a free loopback port over the same store as
facegan (MLFLOW_TRACKING_URI, else $FACEGAN_HOME/mlflow.db) and stops it afterwards. Needs
Debian's `chromium` (`./setup.sh --browser`); no browser is downloaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ARTIFACT = "report/table1.html"


def fail(message: str) -> None:
    print(f"screenshot_mlflow: error: {message}", file=sys.stderr)
    sys.exit(2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"mlflow server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    fail(f"mlflow server at {url} not up after {timeout:.0f} s")


def run_page(ui: str, experiment_id: str, run_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}/artifactPath/{ARTIFACT}"


def screenshot(url: str, out: Path, chromium: str, size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="facegan-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={size}",
               f"--virtual-time-budget={wait_ms}", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not out.is_file():
        fail(f"chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="evaluate run id (default: the newest finished evaluate run)")
    parser.add_argument("--out", type=Path, default=Path("mlflow-report.png"), help="PNG to write")
    parser.add_argument("--ui", help="URL of a running MLflow UI (default: start one on loopback)")
    parser.add_argument("--window-size", default="1600,1100", help="browser window WIDTH,HEIGHT")
    parser.add_argument("--wait-ms", type=int, default=25000, help="page load budget (virtual time)")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        fail("chromium not found: install it with ./setup.sh --browser (Debian: apt-get install chromium)")

    from tasks import tracking

    if args.run:
        try:
            run = tracking.get_run(args.run)
        except Exception:
            fail(f"no MLflow run {args.run!r} in {tracking.tracking_uri()}")
    else:
        runs = tracking.find_runs("evaluate", "attributes.status = 'FINISHED'")
        if not runs:
            fail(f"no finished evaluate run in {tracking.tracking_uri()}: run facegan evaluate or pipeline")
        run = max(runs, key=lambda r: r.info.start_time)
    if ARTIFACT not in tracking.list_artifacts(run.info.run_id, "report"):
        fail(f"run {run.info.run_id} has no {ARTIFACT} (not an evaluate run?)")

    server = None
    ui = args.ui
    try:
        if not ui:
            port = free_port()
            ui = f"http://127.0.0.1:{port}"
            env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
            server = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                                       "--port", str(port), "--workers", "1",
                                       "--backend-store-uri", tracking.tracking_uri()],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True)
            wait_up(ui, server, 120)
        url = run_page(ui.rstrip("/"), run.info.experiment_id, run.info.run_id)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(url, args.out.resolve(), chromium, args.window_size, args.wait_ms)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"{args.out} <- {url}")
    return args.out


if __name__ == "__main__":
    main()
