"""The `generate` flow: N faces from a trained generator, as PNGs plus a grid."""

from __future__ import annotations

from prefect import flow

from facegan.config.generate import GenerateConfig
from facegan.tasks import steps


@flow(name="generate", log_prints=True)
def generate(config: GenerateConfig) -> str:
    """Write N generated faces and a grid; returns the output folder."""
    result = steps.write_faces(config.run, config.n, config.seed, config.out, config.device, config.nrow)
    print(f"{result['n']} faces from {result['model']}-{result['size']} in {result['out']}")
    return result["out"]


def main(config: GenerateConfig) -> str:
    return str(generate(config))
