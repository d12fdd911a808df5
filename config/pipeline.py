"""Config of `facegan pipeline` (the `face-pipeline` flow): acquire -> crop -> train -> evaluate."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from facegan.config.acquire import PRESETS
from facegan.config.base import Device, Size, StageConfig, check_name, default_workers
from facegan.config.gans import DEFAULT_MODEL
from facegan.config.train import Model

# The main job's training budget per model when none is given: 60 kimg (7,500 steps of the default
# recipe's batch 8), at which its faces are detected like real ones and begin to vary (recall
# 0.23-0.28 at N = 300; docs/results/main-job.md), or DEFAULT_MINUTES of training steps if those
# come first: the bound that keeps the main job near ten minutes on a CPU that trains slower (a
# 2-core AMD EPYC without bf16 units trains ~120 images/s, 60 kimg in ~8.5 minutes; a 2-core Xeon
# with AMX ~300). Wall time of the updates only: CPU time would grow with the cores of a larger machine.
DEFAULT_KIMG = 60.0
DEFAULT_MINUTES = 5.0


class PipelineConfig(StageConfig):
    """The whole DAG in one command: acquire a source, crop it, train each model at each size and
    score them (Table 1 report), all nested under one MLflow run tagged facegan.stage=pipeline.

    Each stage is skipped when its output is current: a raw set already holding this source is
    reused (--reacquire to fetch again; a raw set of that --name holding another source is
    refused), crop skips a dataset whose fingerprint matches, a finished training run with the
    same recipe and budget is reused, and so is a finished report for the same runs and N.
    Training stops at the first budget reached (--kimg, --steps, --cpu-minutes, --minutes); with
    none given each model trains 60 kimg (thousands of real images shown to D), or 5 minutes of
    training steps on a CPU too slow for 60 kimg in that time. The defaults (LFW, 64 px, DCGAN at
    batch 8 with 32 maps, lr 4e-4, Adam beta1 0 and mode-seeking 1.0, N=300) took 9 min 04 s from
    scratch on a 2-core AMD EPYC without bf16 units (Zen 3, fp32; the 5 minutes reached at 41.4
    kimg): 295 of 300 generated faces detected (the real control 297), recall 0.18; on a 2-core
    Xeon (bf16) the 60 kimg took 7 min 14 s: 300 of 300 (seeds 1, 2: 296, 298; the control
    297-299), recall 0.27 (0.23, 0.25): varied faces, a short run, not a finished GAN (--kimg 100
    -n 1000: recall 0.26-0.31). Without the 5-minute bound that AMD took 13 min 53 s (296 of 300,
    recall 0.26). Earlier defaults: at batch 64 20 kimg took 8 min 19 s for 183 of 300 on a Xeon
    and 21 min 50 s for 235 of 300 on a 2-core AMD EPYC (Zen 2, fp32)."""

    source: str = Field(
        "lfw",
        min_length=1,
        description="what to acquire: a preset (lfw, celeba), an "
        "image or archive URL (http/https), a local folder, or a local zip/tar archive",
    )
    name: str | None = Field(None, description="raw set and dataset name (none: derived from the source)")
    reacquire: bool = Field(False, description="run acquire even when the raw set already exists")
    sizes: list[Size] = Field([64], description="crop sizes to train and evaluate")
    largest_only: bool = Field(True, description="crop only the largest face per image")
    models: list[Model] = Field([DEFAULT_MODEL], description="GANs to train at each size")
    kimg: float | None = Field(
        None,
        gt=0,
        description="training budget per model in thousands of real "
        f"images shown to D (default {DEFAULT_KIMG:g} when no budget is given)",
    )
    steps: int | None = Field(None, ge=1, description="training budget per model in generator steps")
    cpu_minutes: float | None = Field(
        None,
        gt=0,
        description="training budget per model in CPU-minutes (the same time buys more steps on a faster CPU)",
    )
    minutes: float | None = Field(
        None,
        gt=0,
        description="training budget per model in wall-clock minutes of training steps "
        f"(default {DEFAULT_MINUTES:g} with the default --kimg when no budget is given)",
    )
    score_every: int = Field(
        0,
        ge=0,
        description="also score the detection rate while training, every N steps (0: off; the Table 1 report "
        "after training scores the final generators)",
    )
    batch_size: int | None = Field(None, ge=1, le=4096, description="batch size (none: each model's default)")
    features: int | None = Field(None, ge=4, le=1024, description="base feature maps (none: each model's default)")
    n: int = Field(
        300,
        ge=20,
        le=100_000,
        description="scoring N: generated faces per model (and real "
        "control faces) in the Table 1 report (the paper used 1000)",
        json_schema_extra={"aliases": ["-n"]},
    )
    max_training: int | None = Field(
        1000, ge=10, description="training faces encoded for the report's memorisation column (none: all of them)"
    )
    seed: int = Field(0, ge=0, description="seed of training and scoring")
    device: Device = Field("auto", description="training device")
    workers: int = Field(
        default_factory=default_workers, ge=1, le=64, description="processes for acquire, crop and scoring"
    )
    skip_evaluate: bool = Field(False, description="stop after training (no Table 1 report)")

    @field_validator("sizes", "models")
    @classmethod
    def _unique(cls, values: list) -> list:
        if not values:
            raise ValueError("give at least one value")
        return list(dict.fromkeys(values))

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        return source.strip()

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return check_name(name) if name is not None else None

    @model_validator(mode="after")
    def _budget(self):
        if self.kimg is None and self.steps is None and self.cpu_minutes is None and self.minutes is None:
            self.kimg, self.minutes = DEFAULT_KIMG, DEFAULT_MINUTES
        return self

    def source_kind(self) -> str:
        """'preset', 'url' or 'path'."""
        if self.source.lower() in PRESETS:
            return "preset"
        if self.source.lower().startswith(("http://", "https://")):
            return "url"
        return "path"
