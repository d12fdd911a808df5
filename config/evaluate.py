"""Config of `facegan evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from facegan.config.base import Device, StageConfig, default_workers


class EvaluateConfig(StageConfig):
    """Score trained generators the way the paper's Table 1 did, made rigorous: N faces per model
    from a fixed seed, face_recognition detection under one stated protocol (every image resized
    to 256 px bicubic, HOG with upsample 0), plus a real-data control row (N held-out crops of the
    dataset the runs trained on), memorisation against the training faces, a Fréchet distance on
    face_recognition's 128-d encodings with its noise floor, and k-NN precision/recall.
    Prints the table and the MLflow run id of the report."""

    run: list[str] = Field(
        ...,
        min_length=1,
        description="training runs: names (facegan train --name), MLflow run ids, checkpoint "
        "paths or registered models models:/name/version (all on the same dataset)",
    )
    n: int = Field(
        1000,
        ge=20,
        le=100_000,
        description="images per model (and real control images)",
        json_schema_extra={"aliases": ["-n"]},
    )
    detector: Literal["hog", "cnn"] = Field("hog", description="face_recognition detector (cnn is ~20x slower on CPU)")
    seed: int = Field(0, description="seed of the generators' noise and of the real sets' sampling")
    dataset: str | None = Field(
        None, description="crop dataset name or path for the real control (none: the dataset the runs were trained on)"
    )
    held_out: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="share of identities (else source images) held out for the real control and reference sets",
    )
    max_training: int | None = Field(
        None,
        ge=10,
        description="cap on training faces encoded for the "
        "memorisation column (none: all of them; their encodings are cached)",
    )
    k: int = Field(3, ge=1, le=50, description="neighbours of the k-NN precision/recall manifolds")
    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        le=256,
        description="scoring processes (face_recognition is single-threaded)",
    )
    device: Device = Field("auto", description="device used to run the generators")
    name: str | None = Field(
        None, description="report name, also the MLflow run name (none: evaluate-<dataset>-<size>)"
    )
    allow_changed_dataset: bool = Field(
        False,
        description="score against a dataset re-cropped since the "
        "runs trained on it (refused by default; flagged in the report)",
    )
    keep_pngs: bool = Field(True, description="keep every scored image as a PNG in the report folder")
    inception_weights: Path | None = Field(
        None,
        description="optional: torchvision Inception-v3 weights file to add an Inception FID column (never downloaded)",
    )

    @field_validator("run")
    @classmethod
    def _clean_runs(cls, runs: list[str]) -> list[str]:
        cleaned = [r.strip() for r in runs if r and r.strip()]
        if not cleaned:
            raise ValueError("give at least one training run")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("the same run is given twice")
        return cleaned

    @field_validator("inception_weights")
    @classmethod
    def _weights_exist(cls, path: Path | None) -> Path | None:
        if path is not None and not Path(path).expanduser().is_file():
            raise ValueError(f"no such file: {path}")
        return Path(path).expanduser() if path else None
