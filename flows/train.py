"""The `train` flow: one GAN on one crop dataset -> an MLflow run id.

Self-contained (the unit a GPU worker runs): it takes a dataset name or path and a config,
reads everything it needs from disk, and returns the MLflow run id. Rerunning it with the same
config resumes the same run from its latest checkpoint.
"""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from config.train import TrainConfig
from tasks import tracking
from tasks.training import lifecycle, loop, torchrun


@task(name="open-training-run", cache_policy=NO_CACHE)
def open_run(config: TrainConfig) -> dict:
    return lifecycle.prepare_run(config)


@task(name="train-gan", cache_policy=NO_CACHE)
def train_gan(config: TrainConfig, prepared: dict) -> dict:
    from pathlib import Path

    run = tracking.TrackedRun(prepared["run_id"])
    try:
        if config.nproc > 1:
            return torchrun.launch(config, prepared)
        return loop.train_loop(config, Path(prepared["dataset_path"]), Path(prepared["run_dir"]),
                               prepared["meta"], run)
    except BaseException:
        run.finish("FAILED")
        raise


@task(name="publish-generator", cache_policy=NO_CACHE)
def publish_generator(config: TrainConfig, prepared: dict, summary: dict) -> dict:
    return lifecycle.publish(config, prepared, summary)


@flow(name="train", log_prints=True)
def train(config: TrainConfig = TrainConfig()) -> str:
    """Train a GAN on a crop dataset; returns the MLflow run id."""
    prepared = open_run(config)
    summary = train_gan(config, prepared)
    published = publish_generator(config, prepared, summary)
    tracking.TrackedRun(prepared["run_id"]).finish()
    model = (f"model {published['registered_model']} v{published['model_version']}"
             if published.get("registered_model") else "model not registered (--no-register-model)")
    print(f"run {prepared['run_name']}: step {summary['step']}, {model}, grid {summary['grid']}")
    return prepared["run_id"]


def main(config: TrainConfig) -> str:
    return train(config)
