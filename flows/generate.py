"""The `generate` flow: N faces from a trained generator, as PNGs plus a grid."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from config.train import GenerateConfig


@task(name="generate-faces", cache_policy=NO_CACHE)
def generate_faces(config: GenerateConfig) -> dict:
    from tasks.training.generate import write_faces

    return write_faces(config.run, config.n, config.seed, config.out, config.device, config.nrow)


@flow(name="generate", log_prints=True)
def generate(config: GenerateConfig) -> str:
    """Write N generated faces and a grid; returns the output folder."""
    result = generate_faces(config)
    print(f"{result['n']} faces from {result['model']}-{result['size']} in {result['out']}")
    return result["out"]


def main(config: GenerateConfig) -> str:
    return str(Path(generate(config)))
