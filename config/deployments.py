"""facegan's Prefect deployments, defined once. `facegan serve` (flows/serve.py) builds them from
here; infra/prefect.yaml, read by `prefect deploy` for the work pools, states the same deployments
with the same schedule and parameters (tests/test_infra.py compares the two)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facegan.config.gans import GANS


@dataclass(frozen=True)
class Deployment:
    name: str  # the deployment: <flow name>/<name>
    entrypoint: str  # <file>:<flow function>, relative to the repository root
    work_pool: str  # its pool under `prefect deploy` (served deployments have none)
    description: str
    tags: tuple[str, ...] = ("facegan",)


NIGHTLY_CRON = "0 2 * * *"  # 02:00 every day
NIGHTLY_TIMEZONE = "Europe/Berlin"


def nightly_pipeline() -> dict[str, Any]:
    """The nightly pipeline's config (PipelineConfig fields): LFW, 64 px, the three models with 60
    CPU-minutes each, scored on N=1000 faces as the paper's Table 1 was."""
    return {
        "source": "lfw",
        "sizes": [64],
        "models": [name for name, gan in GANS.items() if gan.nightly],
        "cpu_minutes": 60.0,
        "n": 1000,
    }


NIGHTLY = Deployment(
    "nightly",
    "flows/pipeline.py:face_pipeline",
    "gpu",
    "The whole DAG every night: acquire -> crop -> train -> evaluate (Table 1).",
)
TRAIN = Deployment(
    "gpu",
    "flows/train.py:train",
    "gpu",
    "Train one GAN on the GPU work pool (CUDA_VISIBLE_DEVICES set by the worker).",
    tags=("facegan", "gpu"),
)
DEPLOYMENTS: tuple[Deployment, ...] = (
    NIGHTLY,
    Deployment(
        "on-demand",
        "flows/acquire.py:acquire",
        "cpu",
        'Acquire one source: pass config, e.g. {"preset": "lfw"} or {"path": "/data/photos"}.',
    ),
    Deployment(
        "on-demand", "flows/crop.py:crop", "cpu", "Crop a raw set into 48/64/128 px datasets (skipped when current)."
    ),
    TRAIN,
    Deployment(
        "on-demand",
        "flows/evaluate.py:evaluate",
        "cpu",
        'Table 1 report for training runs: pass config, e.g. {"run": ["<train run id>"]}.',
    ),
)
