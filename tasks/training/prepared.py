"""A training run's two hand-overs: the opened run, as the train task hands it to the loop, the
torchrun workers and the publishing step (lifecycle.prepare_run makes it), and the loop's summary
of what it trained (loop.train_loop makes it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreparedRun:
    """An opened training run: its MLflow run, folder and dataset, the meta written into its
    run.json and generators, and the checkpoint step it resumes from (None: a fresh start)."""

    run_id: str
    run_name: str
    run_dir: Path
    dataset_path: Path
    meta: dict
    resumed_from: int | None

    def to_json(self) -> dict:
        return {**asdict(self), "run_dir": str(self.run_dir), "dataset_path": str(self.dataset_path)}

    @classmethod
    def from_json(cls, data: dict) -> PreparedRun:
        return cls(**{**data, "run_dir": Path(data["run_dir"]), "dataset_path": Path(data["dataset_path"])})


@dataclass(frozen=True)
class TrainSummary:
    """Where the training loop stopped: its counters (checkpoints.Counters), its last checkpoint
    and sample grid (None on the ranks that write neither), and the number of ranks."""

    step: int
    batches: int
    cpu_seconds: float
    wall_seconds: float
    best_detection_rate: float | None
    best_step: int | None
    checkpoint: str | None
    grid: str | None
    world_size: int

    def to_json(self) -> dict:
        return asdict(self)
