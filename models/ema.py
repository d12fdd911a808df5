"""Exponential moving average of a generator's weights (decay 0.999 by default).

Parameters are averaged; with `step` given the decay warms up as min(decay, (1+step)/(10+step))
(as TensorFlow's ExponentialMovingAverage with num_updates), so the random initial weights do
not linger in short CPU runs (0.999^1500 would still be 22% initial weights). Buffers (BatchNorm running statistics) are copied from the live
generator, so the EMA model is used in eval mode exactly like the live one.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach().to(ema_p.dtype), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)
