"""`facegan serve`: the deployments of infra/prefect.yaml served from one process (prefect.serve).
Same names as the work-pool deployments: face-pipeline/nightly, acquire/on-demand,
crop/on-demand, train/gpu, evaluate/on-demand.

Each served deployment owns its code location and drops any work pool, so serve can take over
a deployment that `prefect deploy` registered under the same name. Without that, Prefect 3.8.8
updates such a deployment without its path (RunnerDeployment keeps `path` in a private field that
the update leaves out) and with its pull steps cleared: the server keeps `path: null` from
`prefect deploy`, and the run crashes ("Downloading flow code from storage at None",
FileNotFoundError '<cwd>/None'); its work pool would also stay set, so a pool worker could take
the run too. (Runner.add_flow is no way out: it pickles the flow function by value, whose globals
then miss the config class named only in a postponed annotation, and parameter validation fails.)"""
from __future__ import annotations

import inspect
from pathlib import Path

from config.pipeline import PipelineConfig
from config.serve import ServeConfig

REPO = Path(__file__).resolve().parents[1]


def own(deployment, flow):
    """Make a served deployment self-contained: a `set_working_directory REPO` pull step (sent on
    create and update), the entrypoint relative to REPO, and no work pool (explicitly unset, so
    the update clears a pool set by `prefect deploy`)."""
    from prefect.runner.storage import LocalStorage

    deployment.storage = LocalStorage(str(REPO))
    source = Path(inspect.getsourcefile(flow.fn)).resolve().relative_to(REPO)
    deployment.entrypoint = f"{source.as_posix()}:{flow.fn.__name__}"
    deployment.work_pool_name = None
    deployment.work_queue_name = None
    return deployment


def deployments(config: ServeConfig) -> list:
    from prefect.schedules import Cron

    from flows.acquire import acquire
    from flows.crop import crop
    from flows.evaluate import evaluate
    from flows.pipeline import face_pipeline
    from flows.train import train

    nightly = PipelineConfig(source=config.source, models=config.models, cpu_minutes=config.cpu_minutes)
    served = [
        (face_pipeline, face_pipeline.to_deployment(
            "nightly", schedule=Cron(config.cron, timezone=config.timezone), paused=config.paused,
            tags=["facegan"], parameters={"config": nightly.model_dump(mode="json", exclude_defaults=True)})),
        (acquire, acquire.to_deployment("on-demand", tags=["facegan"])),
        (crop, crop.to_deployment("on-demand", tags=["facegan"])),
        (train, train.to_deployment("gpu", tags=["facegan", "gpu"], concurrency_limit=config.trainings)),
        (evaluate, evaluate.to_deployment("on-demand", tags=["facegan"])),
    ]
    return [own(deployment, flow) for flow, deployment in served]


def main(config: ServeConfig) -> None:
    """Serve on the Prefect server of PREFECT_API_URL (the CLI refuses to start without a
    reachable one: a temporary server would be out of reach of `prefect deployment run`).
    Ctrl-C or SIGTERM stops serving: in-flight runs are cancelled, the schedules paused."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    served = deployments(config)
    api, ui = PREFECT_API_URL.value(), PREFECT_UI_URL.value()
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in served)
    print(f"facegan serve: {len(served)} deployments ({names}) on the Prefect server at {api}"
          + (f" (UI {ui})" if ui else "") + "\nrun one from any shell with the same PREFECT_API_URL, e.g. "
          ".venv/bin/prefect deployment run 'crop/on-demand' --param config='{\"sizes\": [64]}'\n"
          "stop with Ctrl-C or SIGTERM", flush=True)
    serve(*served, limit=config.limit, print_starting_message=False)
    print("facegan serve: stopped", flush=True)
