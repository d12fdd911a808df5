"""FastGAN's lite generator (Liu et al., ICLR 2021), as Projected GAN (Sauer et al. 2021) trains it,
for 48, 64 and 128 px.

    z (B, z_dim) -> scaled to unit second moment (PGGAN's pixel norm)
      -> transposed conv to the first map (4x4, or 3x3 for 48 px) + BatchNorm + GLU
      -> per stage: nearest x2 upsampling, 3x3 conv, BatchNorm, GLU
      -> skip-layer excitation (SLE): the map 4 stages up is multiplied, per channel, by gates
         computed from the first map (4x4 -> 64 px, 8x8 -> 128 px), so the coarse layout steers
         the fine stages directly
      -> 3x3 conv to RGB, Tanh: an image in [-1, 1]

Every conv is spectrally normalised, as in FastGAN. Feature maps: 16, 8, 4, 2, 2, 1 x `features`
at 4, 8, 16, 32, 64 and 128 px (64 px with features=16, the default: 256, 128, 64, 32, 32).
"""

from __future__ import annotations

import torch
from torch import nn

from facegan.models.dcgan import geometry

MULTIPLIERS = (16, 8, 4, 2, 2, 1)  # feature maps per stage, x features


def _sn(layer: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer)


class GLU(nn.Module):
    """Gated linear unit over channels: the first half times the sigmoid of the second."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        _sn(nn.Conv2d(c_in, c_out * 2, 3, 1, 1, bias=False)),
        nn.BatchNorm2d(c_out * 2),
        GLU(),
    )


class SkipExcitation(nn.Module):
    """Channel gates for a fine map from a coarse one: pool to 4x4, 4x4 conv, Swish, 1x1 conv,
    sigmoid."""

    def __init__(self, c_small: int, c_big: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            _sn(nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False)),
            nn.SiLU(),
            _sn(nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False)),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.main(small)


class Generator(nn.Module):
    def __init__(self, size: int = 64, z_dim: int = 100, features: int = 16, channels: int = 3):
        super().__init__()
        self.size, self.z_dim = size, z_dim
        start, stages = geometry(size)
        maps = [features * m for m in MULTIPLIERS[: stages + 1]]
        self.init = nn.Sequential(
            _sn(nn.ConvTranspose2d(z_dim, maps[0] * 2, start, 1, 0, bias=False)), nn.BatchNorm2d(maps[0] * 2), GLU()
        )
        self.ups = nn.ModuleList(up_block(c_in, c_out) for c_in, c_out in zip(maps, maps[1:]))
        # stage i (its map is maps[i]) is excited by stage i - 4
        self.excite = nn.ModuleDict({str(i): SkipExcitation(maps[i - 4], maps[i]) for i in range(4, stages + 1)})
        self.to_rgb = nn.Sequential(_sn(nn.Conv2d(maps[-1], channels, 3, 1, 1, bias=True)), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flatten(1)
        z = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        x = self.init(z[:, :, None, None])
        maps = [x]
        for i, up in enumerate(self.ups, start=1):
            x = up(x)
            if str(i) in self.excite:
                x = self.excite[str(i)](maps[i - 4], x)
            maps.append(x)
        return self.to_rgb(x)
