"""End to end, like production: a real `prefect server start` and a real `mlflow server` on
loopback, work pools and workers from infra/work-pools.sh, `prefect deploy --all` of
infra/prefect.yaml, then `prefect deployment run` of acquire, crop (cpu pool) and train (gpu
pool) on real LFW photos, checked through the Prefect and MLflow clients. Then `facegan serve`
takes the same deployment names over and runs acquire and crop itself. Everything started here is stopped here
(workers before the servers)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, extract_lfw_subset

pytestmark = pytest.mark.slow
BIN = REPO / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, []
        self.prefect_port, self.mlflow_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.prefect_port}/api"
        self.mlflow = f"http://127.0.0.1:{self.mlflow_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "FACEGAN_"))}
        self.env = {
            **env,
            "PREFECT_API_URL": self.api,
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            # workers and served deployments pick up a scheduled run within 2 s (default 10-15 s)
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            "MLFLOW_TRACKING_URI": self.mlflow,
            "FACEGAN_HOME": str(tmp / "home"),
            "FACEGAN_REPO": str(REPO),
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }

    def start(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))
        return proc

    def wait_http(self, url: str, proc: subprocess.Popen, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{proc.args[:3]} exited: {self.logs()}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{url} not up after {timeout} s")

    def run(self, *cmd: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(c) for c in cmd], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    def stop(self, name: str) -> None:
        for n, proc in self.procs:
            if n == name and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)

    def stop_all(self) -> None:  # workers and serve first, servers last
        for name, _ in reversed(self.procs):
            self.stop(name)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in self.tmp.glob("*.log"))

    def deployment_run(self, name: str, config: dict) -> str:
        """`prefect deployment run NAME --param config=JSON --watch`; returns the flow run id."""
        out = self.run(
            BIN / "prefect",
            "deployment",
            "run",
            name,
            "--param",
            f"config={json.dumps(config)}",
            "--watch",
            "--watch-interval",
            "1",
            "--watch-timeout",
            "400",
        )
        return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)

    def client(self):
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    try:
        server = s.start(
            "prefect-server", BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", s.prefect_port
        )
        mlflow = s.start(
            "mlflow-server",
            BIN / "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            s.mlflow_port,
            "--backend-store-uri",
            f"sqlite:///{s.tmp / 'mlflow.db'}",
            "--artifacts-destination",
            s.tmp / "mlartifacts",
            "--workers",
            "1",
        )
        s.wait_http(f"{s.api}/health", server)
        s.wait_http(f"{s.mlflow}/health", mlflow)
        yield s
    finally:
        s.stop_all()


def _cuda_visible_devices(pgid: int) -> set[str]:
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or os.getpgid(int(proc.name)) != pgid:
                continue
            if b"worker\x00start" in (proc / "cmdline").read_bytes():
                env = (proc / "environ").read_bytes().split(b"\x00")
                found |= {e.decode().split("=", 1)[1] for e in env if e.startswith(b"CUDA_VISIBLE_DEVICES=")}
        except (OSError, ProcessLookupError):
            continue
    return found


def test_deploy_pools_workers_and_one_off_runs(stack, tmp_path, monkeypatch):
    src = extract_lfw_subset(tmp_path / "lfw-mini", 30)
    stack.run("infra/work-pools.sh", "create")
    stack.run("infra/work-pools.sh", "deploy")
    with stack.client() as client:
        nightly = client.read_deployment_by_name("face-pipeline/nightly")
        assert nightly.work_pool_name == "gpu"
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] == [
            ("0 2 * * *", "Europe/Berlin", True)
        ]
        for name, pool in (
            ("acquire/on-demand", "cpu"),
            ("crop/on-demand", "cpu"),
            ("train/gpu", "gpu"),
            ("evaluate/on-demand", "cpu"),
        ):
            assert client.read_deployment_by_name(name).work_pool_name == pool
        assert client.read_work_pool("gpu").concurrency_limit == 1
        assert client.read_work_pool("cpu").type == "process"

    stack.start("cpu-worker", "infra/work-pools.sh", "cpu-worker")
    gpu = stack.start("gpu-worker", "infra/work-pools.sh", "gpu-worker")
    runs = {
        "acquire": stack.deployment_run("acquire/on-demand", {"path": str(src), "name": "mini", "progress": False}),
        "crop": stack.deployment_run("crop/on-demand", {"raw": "mini", "sizes": [48], "largest_only": True}),
        "train": stack.deployment_run(
            "train/gpu",
            {
                "dataset": "mini",
                "size": 48,
                "steps": 4,
                "batch_size": 8,
                "features": 8,
                "sample_every": 2,
                "log_every": 1,
            },
        ),
    }
    assert _cuda_visible_devices(gpu.pid) == {"0"}

    with stack.client() as client:
        for stage, run_id in runs.items():
            flow_run = client.read_flow_run(run_id)
            assert flow_run.state.is_completed(), (stage, flow_run.state)
        pools = {stage: client.read_flow_run(r).work_pool_name for stage, r in runs.items()}
        assert pools == {"acquire": "cpu", "crop": "cpu", "train": "gpu"}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.mlflow)  # facegan.tasks.common.tracking talks to the server
    from facegan.tasks.common import tracking

    # this test's runs (the stack is shared with the serve test, which may have run first)
    (acq,), (crop,), (train,) = (
        tracking.find_runs(stage, "attributes.run_name LIKE '%mini%'") for stage in ("acquire", "crop", "train")
    )
    assert all(r.info.status == "FINISHED" for r in (acq, crop, train))
    assert acq.data.metrics["ok"] == 30
    assert crop.data.params["sizes"] == "[48]" and crop.data.metrics["crops_48"] > 20
    assert train.data.metrics["final_step"] == 4 and "loss_d" in train.data.metrics
    assert train.info.artifact_uri.startswith("mlflow-artifacts:")  # stored through the server
    assert "generator/generator.pt" in tracking.list_artifacts(train.info.run_id, "generator")
    assert tracking.resolve_model_uri("models:/facegan-dcgan-48/latest")[0] == train.info.run_id
    assert (Path(stack.env["FACEGAN_HOME"]) / "datasets" / "mini" / "48" / "faces.npy").is_file()
    stack.stop("gpu-worker")
    stack.stop("cpu-worker")


def test_facegan_serve_takes_over_the_deployments_and_runs_them(stack, tmp_path):
    """`facegan serve` on the names `prefect deploy` registered (not deleted first): its runs must
    not load the flow from the pool deployments' `path: null` (docs/deploy.md, serve's pull step)."""
    from prefect.exceptions import ObjectNotFound

    with stack.client() as client:
        try:
            deployed = client.read_deployment_by_name("crop/on-demand").work_pool_name == "cpu"
        except ObjectNotFound:
            deployed = False
    if not deployed:  # this test alone: register the work-pool deployments first
        stack.run("infra/work-pools.sh", "create")
        stack.run("infra/work-pools.sh", "deploy")
    with stack.client() as client:
        before = client.read_deployment_by_name("crop/on-demand")
        assert before.path is None and before.pull_steps  # what `prefect deploy` leaves for serve to update
    src = extract_lfw_subset(tmp_path / "lfw-served", 12, skip_people=40)
    stack.start("serve", BIN / "facegan", "serve", "--cron", "30 3 * * 1", "--timezone", "UTC", "--limit", "1")
    try:
        _serve_runs_the_deployments(stack, src)
    finally:  # the stack is shared: a serve left polling would take the other test's runs
        stack.stop("serve")
    assert "storage at None" not in (stack.tmp / "serve.log").read_text()


def _serve_runs_the_deployments(stack, src: Path) -> None:
    deadline = time.monotonic() + 150
    with stack.client() as client:
        while time.monotonic() < deadline:  # serve updates the five deployments, then polls
            nightly = client.read_deployment_by_name("face-pipeline/nightly")
            limit = client.read_deployment_by_name("train/gpu").global_concurrency_limit
            if (
                nightly.schedules
                and nightly.schedules[0].schedule.cron == "30 3 * * 1"
                and limit is not None
                and client.read_deployment_by_name("evaluate/on-demand").work_pool_name is None
            ):
                break
            time.sleep(2)
        else:
            raise AssertionError(f"facegan serve did not register its deployments:\n{stack.logs()}")
        assert [(s.schedule.cron, s.schedule.timezone) for s in nightly.schedules] == [("30 3 * * 1", "UTC")]
        assert limit.limit == 1  # --trainings: one training at a time on this host
        for name in ("face-pipeline/nightly", "acquire/on-demand", "crop/on-demand", "train/gpu", "evaluate/on-demand"):
            deployment = client.read_deployment_by_name(name)
            assert deployment.work_pool_name is None, name  # no pool worker can take these runs
            assert deployment.entrypoint.startswith("flows/"), name
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
            ], name
    # no worker is running: only the serve process can execute these runs
    runs = [
        stack.deployment_run("acquire/on-demand", {"path": str(src), "name": "served", "progress": False}),
        stack.deployment_run("crop/on-demand", {"raw": "served", "sizes": [48], "largest_only": True}),
    ]
    with stack.client() as client:
        for run_id in runs:
            flow_run = client.read_flow_run(run_id)
            assert flow_run.state.is_completed(), (flow_run.state, stack.logs())
            assert flow_run.work_pool_name is None
    assert (Path(stack.env["FACEGAN_HOME"]) / "datasets" / "served" / "48" / "faces.npy").is_file()
