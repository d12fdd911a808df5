"""`facegan ui`: the MLflow UI (`mlflow server`) on the tracking store facegan actually uses, so
it never opens an empty store somewhere else. Prints the address of the facegan experiment's
runs; stops the server on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from facegan.config.ui import UiConfig


def server_command(config: UiConfig, store: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        store,
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--workers",
        str(config.workers),
    ]


def main(config: UiConfig) -> None:
    from facegan.tasks.common import tracking

    store = tracking.tracking_uri()
    experiment = tracking.experiment()  # as a model-training experiment: the UI opens on its runs
    if store.startswith(("http://", "https://")):
        print(
            f"MLflow is already served at {store}: open {store.rstrip('/')}/#/experiments/"
            f"{experiment.experiment_id}?workflowType=machine_learning (experiment {experiment.name!r})"
        )
        return
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    url = f"http://{shown}:{config.port}"
    print(
        f"MLflow UI on {url}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning "
        f"(experiment {experiment.name!r}, "
        f"store {store}); Ctrl-C to stop",
        flush=True,
    )
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(server_command(config, store), env=env, start_new_session=True)

    def stop(_signum=None, _frame=None):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print("MLflow UI stopped", flush=True)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code != 0:
        from facegan.config.errors import FaceganError

        raise FaceganError(f"mlflow server exited with code {code} (is port {config.port} in use? try --port)")
