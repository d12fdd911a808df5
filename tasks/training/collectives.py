"""Collectives of data-parallel training (one process per GPU, or CPU processes with gloo): which
rank this process is, and the operations the ranks do together. The training loop uses them;
tasks/training/torchrun.py starts the processes.

Gradients are averaged across ranks after every backward (all_reduce, as DistributedDataParallel
does). Why not the DistributedDataParallel wrapper: a GAN step runs D several times per backward
(real, fake, then inside G's loss with D's weights frozen) and WGAN-GP differentiates twice
(gradient penalty); DDP's reducer supports neither pattern. Averaging the gradients of the module
about to step is the same arithmetic and works for all three models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


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


def from_main(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rank 0's value of `tensor` on every rank (sent through `device`: NCCL sends GPU tensors)."""
    sent = tensor.to(device)
    dist.broadcast(sent, src=0)
    return sent.to(tensor.device)


def average_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Average, over all ranks, the gradients of the parameters this optimizer is about to step."""
    world = dist.get_world_size()
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                param.grad.div_(world)


def totals(*values: float) -> list[float]:
    """Sums of numbers over all ranks, in one all-reduce (for the time budgets: every rank stops at
    the same step)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def checksum(module: nn.Module) -> float:
    return float(sum(p.detach().double().sum().item() for p in module.parameters()))


def ranks_agree(module: nn.Module) -> bool:
    """True when every rank holds the same weights (what gradient averaging must guarantee)."""
    mine = torch.tensor([checksum(module)], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)
