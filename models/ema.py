"""Exponential moving average of a generator's weights, and BatchNorm statistics that belong to it.

Parameters are averaged; with `step` given the decay warms up as min(decay, (1+step)/(10+step))
(as TensorFlow's ExponentialMovingAverage with num_updates), so the random initial weights do
not linger in short runs.

BatchNorm running statistics are NOT averaged or copied: the live generator's statistics belong
to the live weights, not to the averaged ones, and sampling the EMA weights with them shifts
every activation (BigGAN's "standing statistics" fix this). `recalibrate_batchnorm` recomputes
them for the EMA weights: reset, cumulative average (momentum None) over a fixed set of noise
batches in train mode, back to eval. The EMA keeps track of whether its statistics are stale
(`update` makes them so) and `sampler()` recalibrates on demand.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(
    G: nn.Module,
    z_dim: int,
    batches: int = 16,
    batch_size: int = 64,
    seed: int = 0,
    context: Callable[[], ContextManager] = contextlib.nullcontext,
) -> nn.Module:
    """Recompute G's BatchNorm running statistics from its own activations on `batches` batches
    of N(0, I) noise (seeded: the same weights give the same statistics). Leaves G in eval mode."""
    layers = batchnorm_layers(G)
    if layers:
        device = next(G.parameters()).device
        momenta = [m.momentum for m in layers]
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch counts equally
        G.train()
        noise = torch.Generator().manual_seed(seed)
        with context():
            for _ in range(batches):
                G(torch.randn(batch_size, z_dim, generator=noise).to(device))
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
    return G.eval()


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.stale = bool(batchnorm_layers(self.model))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)
        self.stale = bool(batchnorm_layers(self.model))

    def sampler(
        self,
        z_dim: int,
        context: Callable[[], ContextManager] = contextlib.nullcontext,
        batches: int = 16,
        batch_size: int = 64,
    ) -> nn.Module:
        """The EMA generator in eval mode, its BatchNorm statistics recomputed if stale."""
        if self.stale:
            recalibrate_batchnorm(self.model, z_dim, batches, batch_size, context=context)
            self.stale = False
        return self.model

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)
