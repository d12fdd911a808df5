"""`facegan serve`: facegan's deployments (config/deployments.py, the same ones infra/prefect.yaml
deploys to the work pools) served from one process with prefect.serve.

Each served deployment owns its code location and drops any work pool, so serve can take over
a deployment that `prefect deploy` registered under the same name (why: docs/deploy.md)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from facegan.config.deployments import DEPLOYMENTS, NIGHTLY, TRAIN, Deployment
from facegan.config.pipeline import PipelineConfig
from facegan.config.serve import ServeConfig

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


def flow_of(deployment: Deployment):
    """The Prefect flow object at a deployment's entrypoint (a file path relative to REPO, such as
    flows/train.py:train, which is the module facegan.flows.train)."""
    path, _, function = deployment.entrypoint.partition(":")
    return getattr(importlib.import_module("facegan." + path.removesuffix(".py").replace("/", ".")), function)


def deployments(config: ServeConfig) -> list:
    """The RunnerDeployments `facegan serve` registers (nothing is sent to a Prefect server here)."""
    from prefect.schedules import Cron

    served = []
    for d in DEPLOYMENTS:
        flow = flow_of(d)
        options: dict = {"description": d.description, "tags": list(d.tags)}
        if d is NIGHTLY:
            nightly = config.nightly_parameters()
            PipelineConfig(**nightly)  # a bad --source or --models fails here, before serving
            options.update(
                schedule=Cron(config.cron, timezone=config.timezone),
                paused=config.paused,
                parameters={"config": nightly},
            )
        if d is TRAIN:
            options["concurrency_limit"] = config.trainings
        served.append(own(flow.to_deployment(d.name, **options), flow))
    return served


def main(config: ServeConfig) -> None:
    """Serve on the Prefect server of PREFECT_API_URL (the CLI refuses to start without a
    reachable one: a temporary server would be out of reach of `prefect deployment run`).
    Ctrl-C or SIGTERM stops serving: in-flight runs are cancelled, the schedules paused."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    served = deployments(config)
    api, ui = PREFECT_API_URL.value(), PREFECT_UI_URL.value()
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in served)
    print(
        f"facegan serve: {len(served)} deployments ({names}) on the Prefect server at {api}"
        + (f" (UI {ui})" if ui else "")
        + "\nrun one from any shell with the same PREFECT_API_URL, e.g. "
        ".venv/bin/prefect deployment run 'crop/on-demand' --param config='{\"sizes\": [64]}'\n"
        "stop with Ctrl-C or SIGTERM",
        flush=True,
    )
    serve_until_stopped(served, config.limit)
    print("facegan serve: stopped", flush=True)


def serve_until_stopped(served: list, limit: int | None) -> None:
    """prefect.serve with a SIGTERM that stops like Ctrl-C. Prefect's own SIGTERM handler calls the
    runner's sync stop() from inside the runner's event loop, where it only creates a coroutine that
    nobody awaits ("coroutine 'Runner.astop' was never awaited") before sys.exit. Here SIGTERM
    raises TerminationSignal out of the loop instead: asyncio.run then cancels the runner's task,
    whose shutdown pauses the schedules and cancels in-flight runs, awaited."""
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    def stop(signum, frame):
        raise TerminationSignal(signal=signum)

    runner = Runner(pause_on_shutdown=True, limit=limit)
    runner.handle_sigterm = stop  # Runner.start() installs it as the SIGTERM handler
    for deployment in served:
        runner.add_deployment(deployment)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass
