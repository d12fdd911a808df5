"""What the crop stage hands on: the counts of a crop (CropStats) and the flow's result (CropResult)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CropStats:
    """What a crop counted: `metrics` as logged to MLflow (crops_<size> among them) and `crops`,
    the crops written per size."""

    metrics: dict[str, float]
    crops: dict[int, int]


@dataclass(frozen=True)
class CropResult:
    """The crop flow's result: the dataset, whether it was current (skipped), the MLflow run that
    cropped it, its crops per size, and this run's counts (empty when skipped)."""

    dataset: str
    path: str
    skipped: bool
    run_id: str | None
    crops: dict[int, int]
    stats: dict[str, float] = field(default_factory=dict)
