"""infra/: the compose stack (Docker is not available here: its structure is checked by parsing
it), the Dockerfile it builds and the deployment file's declarations."""

from __future__ import annotations

import re
import subprocess

import yaml
from conftest import REPO

INFRA = REPO / "infra"


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _default(text: str) -> str:
    """Resolve compose's ${VAR:-default} to the default, as `docker compose` does with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def test_compose_services_ports_volumes_and_healthchecks():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "prefect-server", "mlflow", "deploy", "worker-cpu", "worker-gpu"}
    published = {name: [_default(p) for p in s.get("ports", [])] for name, s in services.items()}
    assert published["prefect-server"] == ["127.0.0.1:4200:4200"]
    assert published["mlflow"] == ["127.0.0.1:5000:5000"]
    assert not any(published[n] for n in ("postgres", "deploy", "worker-cpu", "worker-gpu"))
    for name in ("postgres", "prefect-server", "mlflow"):
        assert services[name]["healthcheck"]["test"], name
    assert set(compose["volumes"]) == {"postgres-data", "mlflow-artifacts", "facegan-data"}
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "mlflow-artifacts:/mlartifacts" in services["mlflow"]["volumes"]
    for worker in ("worker-cpu", "worker-gpu"):
        assert "facegan-data:/data" in services[worker]["volumes"]
        env = services[worker]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert services[worker]["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert services["worker-cpu"]["command"] == ["infra/work-pools.sh", "cpu-worker"]
    assert services["worker-gpu"]["command"] == ["infra/work-pools.sh", "gpu-worker"]


def test_compose_backends_and_gpu_request():
    services = _compose()["services"]
    mlflow = [_default(c) for c in services["mlflow"]["command"]]
    store = mlflow[mlflow.index("--backend-store-uri") + 1]
    assert store == "postgresql://facegan:facegan@postgres:5432/mlflow"
    assert mlflow[mlflow.index("--artifacts-destination") + 1] == "/mlartifacts"
    assert "--serve-artifacts" in mlflow
    prefect_db = _default(services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert prefect_db == "postgresql+asyncpg://facegan:facegan@postgres:5432/prefect"
    for name in ("prefect-server", "mlflow"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    (device,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "devices" not in str(services["worker-cpu"].get("deploy", {}))
    init = (INFRA / "postgres-init.sql").read_text()
    assert "CREATE DATABASE mlflow" in init
    assert "./postgres-init.sql:/docker-entrypoint-initdb.d/10-mlflow.sql:ro" in services["postgres"]["volumes"]


def test_dockerfile_builds_what_compose_runs():
    services = _compose()["services"]
    assert services["prefect-server"]["build"]["dockerfile"] == "infra/Dockerfile"
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11" in dockerfile
    for path in ("flows", "tasks", "models", "evaluation", "infra"):
        assert f"COPY {path} ./{path}" in dockerfile and (REPO / path).is_dir()
    assert "-c constraints.txt" in dockerfile and "psycopg2" in dockerfile
    assert "USER facegan" in dockerfile


def test_prefect_yaml_declares_the_deployments():
    spec = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    found = {(d["entrypoint"].split(":")[1], d["name"]): d for d in spec["deployments"]}
    assert set(found) == {
        ("face_pipeline", "nightly"),
        ("acquire", "on-demand"),
        ("crop", "on-demand"),
        ("train", "gpu"),
        ("evaluate", "on-demand"),
    }
    (schedule,) = found["face_pipeline", "nightly"]["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"]
    assert found["train", "gpu"]["work_pool"]["name"] == "gpu"
    assert found["evaluate", "on-demand"]["work_pool"]["name"] == "cpu"
    for d in spec["deployments"]:  # entrypoints exist
        path, func = d["entrypoint"].split(":")
        assert re.search(rf"^def {func}\(", (REPO / path).read_text(), re.M), d["entrypoint"]
    # the nightly parameters are a valid PipelineConfig
    from facegan.config.pipeline import PipelineConfig

    PipelineConfig(**found["face_pipeline", "nightly"]["parameters"]["config"])


def _declared(d: dict) -> dict:
    return {
        "entrypoint": d["entrypoint"],
        "description": d["description"],
        "tags": sorted(d["tags"]),
        "schedules": [(s["cron"], s["timezone"], s["active"]) for s in d.get("schedules", [])],
        "parameters": d.get("parameters", {}),
    }


def _served(d) -> dict:
    return {
        "entrypoint": d.entrypoint,
        "description": d.description,
        "tags": sorted(d.tags),
        "schedules": [(s.schedule.cron, s.schedule.timezone, not d.paused) for s in d.schedules or []],
        "parameters": d.parameters,
    }


def test_prefect_deploy_and_facegan_serve_run_the_same_deployments():
    """infra/prefect.yaml against the deployments `facegan serve` builds with its defaults (built
    in-process, nothing is sent to a Prefect server): same names, flows, schedules, parameters."""
    from facegan.config.deployments import DEPLOYMENTS
    from facegan.config.serve import ServeConfig
    from facegan.flows.serve import deployments

    spec = yaml.safe_load((INFRA / "prefect.yaml").read_text())
    declared = {(d["entrypoint"], d["name"]): _declared(d) for d in spec["deployments"]}
    served = {(d.entrypoint, d.name): _served(d) for d in deployments(ServeConfig())}
    assert declared == served
    assert declared["flows/pipeline.py:face_pipeline", "nightly"]["schedules"] == [("0 2 * * *", "Europe/Berlin", True)]
    pools = {(d["entrypoint"], d["name"]): d["work_pool"]["name"] for d in spec["deployments"]}
    assert pools == {(d.entrypoint, d.name): d.work_pool for d in DEPLOYMENTS}


def test_work_pools_script_usage():
    proc = subprocess.run([str(INFRA / "work-pools.sh"), "nonsense"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown command: nonsense" in proc.stderr
    assert "infra/work-pools.sh gpu-worker" in proc.stdout
    assert subprocess.run(["bash", "-n", str(INFRA / "work-pools.sh")]).returncode == 0
