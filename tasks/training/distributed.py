"""Data-parallel training over several processes (one per GPU, or CPU processes with gloo).

`facegan train --nproc N` makes the train task launch `torchrun --standalone --nproc-per-node N`
running this module; every rank trains on its own slice of each epoch, gradients are averaged
across ranks after every backward (all_reduce, as DistributedDataParallel does), and rank 0 alone
logs to MLflow, saves sample grids and writes checkpoints. The effective batch is N x batch size.

Why not the DistributedDataParallel wrapper: a GAN step runs D several times per backward (real,
fake, then inside G's loss with D's weights frozen) and WGAN-GP differentiates twice (gradient
penalty); DDP's reducer supports neither pattern. Averaging the gradients of the module about to
step is the same arithmetic and works for all three models.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from config.errors import TrainingError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def current() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return SINGLE


def init_from_env() -> Ranks:
    """Join the process group torchrun describes in the environment (NCCL on CUDA, else gloo)."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    ranks = current()
    if backend == "nccl":
        torch.cuda.set_device(ranks.local_rank)
    return ranks


def broadcast_module(module: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere (as DDP does when it wraps a model)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Average, over all ranks, the gradients of the parameters this optimizer is about to step."""
    world = dist.get_world_size()
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad.div_(world)


def total(value: float) -> float:
    """Sum of a number over all ranks (for the CPU-time budget: every rank stops at the same step)."""
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())


def checksum(module: nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def ranks_agree(module: nn.Module) -> bool:
    """True when every rank holds the same weights (what gradient averaging must guarantee)."""
    mine = torch.tensor([checksum(module)], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def launch(config, prepared: dict) -> dict:
    """Run the training loop under torchrun with config.nproc processes; returns rank 0's summary."""
    with tempfile.TemporaryDirectory(prefix="facegan-ddp-") as tmp:
        job = Path(tmp) / "job.json"
        result = Path(tmp) / "summary.json"
        job.write_text(json.dumps({"config": config.model_dump(mode="json"), "prepared": prepared,
                                   "result": str(result)}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={config.nproc}", "-m", "tasks.training.distributed", str(job)]
        proc = subprocess.run(cmd)  # same interpreter and working directory: the project imports as here
        if proc.returncode != 0 or not result.is_file():
            errors = sorted(Path(tmp).glob("error-rank*.txt"))
            reason = errors[0].read_text().strip() if errors else f"exit code {proc.returncode}"
            raise TrainingError(f"torchrun with {config.nproc} processes failed: {reason}")
        return json.loads(result.read_text())


def _worker(job_file: str) -> None:
    from config.train import TrainConfig
    from tasks import tracking
    from tasks.training.loop import train_loop

    job = json.loads(Path(job_file).read_text())
    config = TrainConfig(**job["config"])
    prepared = job["prepared"]
    ranks = init_from_env()
    if config.threads is None:  # share the cores between the ranks
        config = config.model_copy(update={"threads": max(1, (os.cpu_count() or 1) // ranks.world)})
    run = tracking.TrackedRun(prepared["run_id"]) if ranks.main else None
    try:
        summary = train_loop(config, Path(prepared["dataset_path"]), Path(prepared["run_dir"]),
                             prepared["meta"], run)
        if ranks.main:
            Path(job["result"]).write_text(json.dumps(summary))
    except Exception as exc:  # the launcher turns the first rank's error into one line
        Path(job["result"]).with_name(f"error-rank{ranks.rank}.txt").write_text(f"rank {ranks.rank}: {exc}")
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])
