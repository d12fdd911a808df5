"""The `train` flow: one GAN on one crop dataset -> an MLflow run id.

Self-contained (the unit a GPU worker runs): it takes a dataset name or path and a config,
reads everything it needs from disk, and returns the MLflow run id. Rerunning it with the same
config resumes the same run from its latest checkpoint.
"""

from __future__ import annotations

from prefect import flow

from facegan.config.train import TrainConfig
from facegan.tasks import steps
from facegan.tasks.training import lifecycle


@flow(name="train", log_prints=True)
def train(config: TrainConfig = TrainConfig()) -> str:
    """Train a GAN on a crop dataset; returns the MLflow run id."""
    prepared = steps.open_training_run(config)
    summary = steps.train_gan(config, prepared)
    published = steps.publish_generator(config, prepared, summary)
    lifecycle.finish(prepared)
    print(lifecycle.summary_line(prepared, summary, published))
    return prepared.run_id


def main(config: TrainConfig) -> str:
    return train(config)
