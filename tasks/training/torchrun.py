"""`facegan train --nproc N`: the train task launches `torchrun --standalone --nproc-per-node N`
running this module; every rank trains on its own slice of each epoch (tasks/training/loop.py,
gradients averaged by tasks/training/collectives.py), and rank 0 alone logs to MLflow, saves
sample grids and writes checkpoints. The effective batch is N x batch size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch.distributed as dist

from facegan.config.errors import TrainingError
from facegan.config.train import TrainConfig
from facegan.tasks.common import tracking
from facegan.tasks.training.collectives import init_from_env
from facegan.tasks.training.loop import train_loop
from facegan.tasks.training.prepared import PreparedRun, TrainSummary


def launch(config: TrainConfig, prepared: PreparedRun) -> TrainSummary:
    """Run the training loop under torchrun with config.nproc processes; returns rank 0's summary."""
    with tempfile.TemporaryDirectory(prefix="facegan-ddp-") as tmp:
        job = Path(tmp) / "job.json"
        result = Path(tmp) / "summary.json"
        job.write_text(
            json.dumps(
                {"config": config.model_dump(mode="json"), "prepared": prepared.to_json(), "result": str(result)}
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={config.nproc}",
            "-m",
            "facegan.tasks.training.torchrun",
            str(job),
        ]
        proc = subprocess.run(cmd)  # same interpreter and working directory: the project imports as here
        if proc.returncode != 0 or not result.is_file():
            errors = sorted(Path(tmp).glob("error-rank*.txt"))
            reason = errors[0].read_text().strip() if errors else f"exit code {proc.returncode}"
            raise TrainingError(f"torchrun with {config.nproc} processes failed: {reason}")
        return TrainSummary(**json.loads(result.read_text()))


def _worker(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    config = TrainConfig(**job["config"])
    prepared = PreparedRun.from_json(job["prepared"])
    ranks = init_from_env()
    if config.threads is None:  # share the cores between the ranks
        config = config.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // ranks.world)})
    run = tracking.TrackedRun(prepared.run_id) if ranks.main else None
    try:
        summary = train_loop(config, prepared.dataset_path, prepared.run_dir, prepared.meta, run)
        if ranks.main:
            Path(job["result"]).write_text(json.dumps(summary.to_json()))
    except Exception as exc:  # the launcher turns the first rank's error into one line
        Path(job["result"]).with_name(f"error-rank{ranks.rank}.txt").write_text(f"rank {ranks.rank}: {exc}")
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])
