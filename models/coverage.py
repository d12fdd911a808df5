"""A coverage term for the generator: every real face should have a generated face near it.

The implicit-maximum-likelihood (IMLE) term of Inclusive GAN (Yu et al., ECCV 2020; Li & Malik
2018): for each real face of the batch, draw a pool of latents, find the generated face nearest
to the real one, and pull it closer. D's loss only asks each generated face to look real; this
term asks that no real face be far from all of them — the recall a GAN loses when it collapses.

"Near" is measured where pixels are a poor judge: in a frozen ImageNet network's features
(EfficientNet-lite0 up to its stride-8 tap, the projected discriminator's second), averaged to
4x4 positions and L2-normalised. Never a face-identity network: face encodings are the yardstick
(docs/results/projected.md: in this tap a face's nearest neighbour is the same person 43% of the
time, face encodings 99%).

    real (B, 3, s, s), pool of generated faces (P, 3, s, s), both in [-1, 1]
      -> frozen features (B, 640), (P, 640)
      -> each real face's nearest pool face (no gradient through the choice)
      -> loss = mean squared distance between each real face and its nearest, ∈ [0, 4]

The feature network keeps its weights and stays in eval mode; gradients flow through it to the
generated images only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facegan.models.projected import IMAGENET_MEAN, IMAGENET_STD, feature_network

TAP = 2  # EfficientNet-lite0's parts up to stride 8 (40 channels)
POSITIONS = 4  # features averaged to 4x4 positions: the same length at every image size


class FeatureSpace(nn.Module):
    """Images in [-1, 1] -> (N, 640) L2-normalised frozen ImageNet features."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.parts = feature_network(pretrained)[:TAP].requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureSpace:
        return super().train(False)  # frozen BatchNorm statistics, always

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images + 1) / 2 - self.mean) / self.std
        for part in self.parts:
            x = part(x)
        return F.normalize(F.adaptive_avg_pool2d(x, POSITIONS).flatten(1).float(), dim=1)


def coverage_loss(space: FeatureSpace, real: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared feature distance from each real face to its nearest face in `pool` (which
    carries the generator's graph), and which pool face that was for each real one."""
    with torch.no_grad():
        targets = space(real)
        nearest = torch.cdist(targets, space(pool.detach())).argmin(1)
    chosen = space(pool[nearest])
    return (chosen - targets).pow(2).sum(1).mean(), nearest
