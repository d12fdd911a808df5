"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to BOTH real and fake
images before the discriminator, so a discriminator on a small dataset cannot memorise it.

    x = diff_augment(x, "color,translation,cutout")

color: random brightness, saturation, contrast; translation: shift by up to 1/8 of the side
(zero fill); cutout: a zeroed square of half the side at a random position. Works on images in
[-1, 1], any batch size, per-sample random parameters from torch's global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facegan.config.recipe import parse_policy


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    for name in parse_policy(policy):
        x = _AUGMENTS[name](x)
    return x


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.size(0)
    x = x + (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _grid(b: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.meshgrid(
        torch.arange(b, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, size=(b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, size=(b, 1, 1), device=x.device)
    gb, gx, gy = _grid(b, h, w, x.device)
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=(b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=(b, 1, 1), device=x.device)
    gb, gx, gy = _grid(b, ch, cw, x.device)
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_AUGMENTS = {"color": _color, "translation": _translation, "cutout": _cutout}
