"""Screenshots of the MLflow UI in headless Chromium: the `facegan` experiment as it opens (its
runs table) and an evaluate run's Table 1 report.

    .venv/bin/python infra/screenshot_mlflow.py                     # newest evaluate run -> mlflow-report.png
                                                                    # and the runs table -> mlflow-runs.png
    .venv/bin/python infra/screenshot_mlflow.py --run <run id> --out shot.png --runs-out runs.png
    .venv/bin/python infra/screenshot_mlflow.py --ui http://127.0.0.1:5000   # an MLflow UI already running

Without --ui it starts `mlflow server` on a free loopback port over the same store as
facegan (MLFLOW_TRACKING_URI, else $FACEGAN_HOME/mlflow.db) and stops it afterwards. Needs
Debian's `chromium` (`./setup.sh --browser`); no browser is downloaded.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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


def experiment_page(ui: str, experiment_id: str) -> str:
    """The experiment as a user opens it: a model-training experiment opens on its runs table."""
    return f"{ui}/#/experiments/{experiment_id}?workflowType=machine_learning"


# MLflow 3.17 opens its Assistant side panel on a browser's first visit, covering the right part
# of the page (Table 1's last columns), and shows experiments in its "GenAI" mode (Overview,
# traces) unless told otherwise. The UI keeps both in localStorage (key "<name>_v<version>",
# JSON values); they are set before any page is shot. facegan's own URLs also carry
# ?workflowType=machine_learning (see flows/ui.py).
UI_STATE = {
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.workflowType_v1": '"machine_learning"',
}


class Browser:
    """Headless Chromium driven over the DevTools protocol (websockets, a Prefect dependency)."""

    def __init__(self, chromium: str, size: str):
        self.profile = tempfile.TemporaryDirectory(prefix="facegan-chromium-")
        port = free_port()
        width, height = (int(v) for v in size.split(","))
        self.size = (width, height)
        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={self.profile.name}",
                f"--window-size={width},{height}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                fail("chromium did not start (DevTools endpoint not up)")
            time.sleep(0.3)
        from websockets.sync.client import connect

        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.next_id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    fail(f"chromium: {method}: {message['error'].get('message')}")
                return message.get("result", {})

    def open(self, url: str, wait_ms: int) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + wait_ms / 1000
        while time.monotonic() < deadline:  # the UI renders client-side: wait for the page to settle
            ready = self.call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
            if ready.get("result", {}).get("value") == "complete":
                break
            time.sleep(0.5)

    def close_assistant(self, origin: str) -> None:
        self.open(f"{origin}/health", 10000)  # same origin, without the app
        script = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in UI_STATE.items())
        self.call("Runtime.evaluate", expression=script)

    def shot(self, url: str, out: Path, wait_ms: int, settle_s: float, expect: str = "") -> None:
        """Open `url`, wait until the page shows `expect` (the UI fetches its data after the
        document loads), let it render `settle_s` more seconds, and save a PNG."""
        self.open(url, wait_ms)
        deadline = time.monotonic() + wait_ms / 1000
        probe = f"document.body && document.body.innerText.includes({json.dumps(expect)})"
        while expect and time.monotonic() < deadline:
            if self.call("Runtime.evaluate", expression=probe, returnByValue=True).get("result", {}).get("value"):
                break
            time.sleep(0.5)
        else:
            if expect:
                fail(f"{url} never showed {expect!r} within {wait_ms} ms")
        time.sleep(settle_s)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Shut Chromium down with its helper processes (renderer, GPU, crash handler: the
        process group), then remove the profile they wrote to."""
        try:
            self.ws.send(json.dumps({"id": self.next_id + 1, "method": "Browser.close"}))  # orderly exit
            self.ws.close()
        except Exception:  # noqa: BLE001 - not connected, or already gone: killed below
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:  # a helper still writing to the profile is what made its removal fail
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.profile.cleanup()


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="evaluate run id (default: the newest finished evaluate run)")
    parser.add_argument("--out", type=Path, default=Path("mlflow-report.png"), help="PNG of the report page")
    parser.add_argument(
        "--runs-out", type=Path, default=Path("mlflow-runs.png"), help="PNG of the facegan experiment's runs table"
    )
    parser.add_argument("--ui", help="URL of a running MLflow UI (default: start one on loopback)")
    parser.add_argument("--window-size", default="1600,1100", help="browser window WIDTH,HEIGHT")
    parser.add_argument("--wait-ms", type=int, default=120000, help="page load budget, ms")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let a loaded page render its data")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        fail("chromium not found: install it with ./setup.sh --browser (Debian: apt-get install chromium)")

    from facegan.tasks.common import tracking

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

    top = run  # the runs table lists top-level runs only (child runs are folded under their parent)
    while top.data.tags.get("mlflow.parentRunId"):
        top = tracking.get_run(top.data.tags["mlflow.parentRunId"])

    server = None
    ui = args.ui
    try:
        if not ui:
            port = free_port()
            ui = f"http://127.0.0.1:{port}"
            env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("mlflow")),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    tracking.tracking_uri(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
            wait_up(ui, server, 120)
        runs_url = experiment_page(ui.rstrip("/"), run.info.experiment_id)
        url = run_page(ui.rstrip("/"), run.info.experiment_id, run.info.run_id)
        browser = Browser(chromium, args.window_size)
        try:
            browser.close_assistant(ui.rstrip("/"))
            for page, out, expect in ((runs_url, args.runs_out, top.info.run_name), (url, args.out, "table1.html")):
                out.parent.mkdir(parents=True, exist_ok=True)
                browser.shot(page, out.resolve(), args.wait_ms, args.settle, expect)
        finally:
            browser.close()
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    print(f"{args.runs_out} <- {runs_url}")
    print(f"{args.out} <- {url}")
    return args.out


if __name__ == "__main__":
    main()
