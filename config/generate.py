"""Config of `facegan generate`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from facegan.config.base import Device, StageConfig


class GenerateConfig(StageConfig):
    """Generate faces with a trained generator: N PNGs plus a grid."""

    run: str = Field(..., description="training run name, MLflow run id, checkpoint .pt path or models:/name/version")
    n: int = Field(10, ge=1, le=100000, description="how many faces", json_schema_extra={"aliases": ["-n"]})
    seed: int = Field(0, ge=0, description="noise seed (same seed, same faces)")
    out: Path | None = Field(None, description="output folder (default: $FACEGAN_HOME/generated/<run>-seed<seed>)")
    device: Device = Field("cpu", description="device to generate on")
    nrow: int = Field(10, ge=1, le=100, description="images per row of the grid")
