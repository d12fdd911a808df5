"""A coverage term for the generator: every real face should have a generated face near it.

The implicit-maximum-likelihood (IMLE) term of Inclusive GAN (Yu et al., ECCV 2020; Li & Malik
2018): for each real face of the batch, find the generated face nearest to it and pull it closer.
D's loss only asks each generated face to look real; this term asks that no real face be far
from all of them — the recall a GAN loses when it collapses.

"Near" is measured in a frozen ImageNet network's features (EfficientNet-lite0 up to its
stride-8 tap, the projected discriminator's second), averaged to 4x4 positions and
L2-normalised; never a face-identity network: face encodings are the yardstick.

The nearest face must come from many: a trained generator's faces are as near a real face as
other real faces are when there are 32 of each, and only from about a thousand on does a real
face lie measurably further from the generated ones (docs/results/coverage.md). So the
candidates are a bank: the latents of the last `size` faces the generator made for D, with
their features, kept without a graph; the chosen latents are generated again, with one.

    real (B, 3, s, s) in [-1, 1] -> frozen features (B, 640)
      -> each real face's nearest latent in the bank (no gradient through the choice)
      -> loss = mean squared distance between each real face and G(that latent), in [0, 4]

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


class LatentBank:
    """The latents of the last `size` generated faces and their features: a ring buffer."""

    def __init__(self, size: int):
        self.size = size
        self.z: torch.Tensor | None = None
        self.features: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.z is None else len(self.z)

    @torch.no_grad()
    def add(self, z: torch.Tensor, features: torch.Tensor) -> None:
        z, features = z.detach(), features.detach()
        if self.z is not None:
            z, features = torch.cat([self.z, z]), torch.cat([self.features, features])
        self.z, self.features = z[-self.size :], features[-self.size :]

    @torch.no_grad()
    def nearest(self, targets: torch.Tensor) -> torch.Tensor:
        """Each target's nearest bank entry (indices into the bank)."""
        return torch.cdist(targets, self.features).argmin(1)


def coverage_loss(space: FeatureSpace, real: torch.Tensor, G: nn.Module, bank: LatentBank) -> torch.Tensor:
    """Mean squared feature distance from each real face to G(its nearest latent in the bank),
    with G's graph."""
    with torch.no_grad():
        targets = space(real)
    z = bank.z[bank.nearest(targets)]
    return (space(G(z)) - targets).pow(2).sum(1).mean()
