"""`facegan serve`: the deployments of infra/prefect.yaml served from one process (prefect.serve).
Same names as the work-pool deployments: face-pipeline/nightly, acquire/on-demand,
crop/on-demand, train/gpu, evaluate/on-demand."""
from __future__ import annotations

from flows.config.pipeline import PipelineConfig
from flows.config.serve import ServeConfig


def deployments(config: ServeConfig) -> list:
    from prefect.schedules import Cron

    from flows.acquire import acquire
    from flows.crop import crop
    from flows.evaluate import evaluate
    from flows.pipeline import face_pipeline
    from flows.train import train

    nightly = PipelineConfig(source=config.source, models=config.models, cpu_minutes=config.cpu_minutes)
    return [
        face_pipeline.to_deployment("nightly", schedule=Cron(config.cron, timezone=config.timezone),
                                    paused=config.paused, tags=["facegan"],
                                    parameters={"config": nightly.model_dump(mode="json", exclude_defaults=True)}),
        acquire.to_deployment("on-demand", tags=["facegan"]),
        crop.to_deployment("on-demand", tags=["facegan"]),
        train.to_deployment("gpu", tags=["facegan", "gpu"], concurrency_limit=config.trainings),
        evaluate.to_deployment("on-demand", tags=["facegan"]),
    ]


def main(config: ServeConfig) -> None:
    from prefect import serve

    serve(*deployments(config), limit=config.limit)
