"""BEGAN (Berthelot et al. 2017): an auto-encoder discriminator and an equilibrium controller.

D(x) reconstructs x; its loss is the L1 reconstruction error. The discriminator minimises
L(x) - k_t L(G(z)), the generator minimises L(G(z)), and k_t keeps E[L(G(z))] = gamma E[L(x)]:
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1)
The convergence measure M_global = L(x) + |gamma L(x) - L(G(z))| falls as training improves.

Architecture as in the paper: 3x3 convs with ELU, two per scale, nearest-neighbour upsampling in
the decoder, stride-2 convs in the encoder (filters grow n, 2n, 3n, ...), a fully-connected
bottleneck h. The first feature map is 8x8 (6x6 for 48 px); 128 px has one stage more than 64.
"""

from __future__ import annotations

import torch
from torch import nn

from facegan.models.dcgan import geometry


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, 1, 1),
        nn.ELU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1),
        nn.ELU(inplace=True),
    ]


class Decoder(nn.Module):
    """h-vector -> image. Used as the generator and as the discriminator's decoder."""

    def __init__(self, size: int = 64, h_dim: int = 64, features: int = 64, channels: int = 3, tanh: bool = False):
        super().__init__()
        self.start, stages = geometry(size, smallest=8)
        self.features = features
        self.fc = nn.Linear(h_dim, features * self.start**2)
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += _block(features, features) + [nn.Upsample(scale_factor=2, mode="nearest")]
        layers += _block(features, features) + [nn.Conv2d(features, channels, 3, 1, 1)]
        if tanh:
            layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h.flatten(1)
        return self.main(self.fc(h).view(-1, self.features, self.start, self.start))


class Generator(Decoder):
    """z (B, z_dim) or (B, z_dim, 1, 1) -> image in [-1, 1]."""

    def __init__(self, size: int = 64, z_dim: int = 64, features: int = 64, channels: int = 3):
        super().__init__(size, z_dim, features, channels, tanh=True)
        self.size, self.z_dim = size, z_dim


class Encoder(nn.Module):
    def __init__(self, size: int = 64, h_dim: int = 64, features: int = 64, channels: int = 3):
        super().__init__()
        start, stages = geometry(size, smallest=8)
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, 1, 1), nn.ELU(inplace=True)]
        for i in range(1, stages + 1):
            layers += _block(features * i, features * i)
            layers += [nn.Conv2d(features * i, features * (i + 1), 3, 2, 1), nn.ELU(inplace=True)]
        layers += _block(features * (stages + 1), features * (stages + 1))
        self.main = nn.Sequential(*layers)
        self.fc = nn.Linear(features * (stages + 1) * start**2, h_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.main(x).flatten(1))


class AutoEncoder(nn.Module):
    """The BEGAN discriminator: returns the reconstruction of its input."""

    def __init__(self, size: int = 64, h_dim: int = 64, features: int = 64, channels: int = 3):
        super().__init__()
        self.encoder = Encoder(size, h_dim, features, channels)
        self.decoder = Decoder(size, h_dim, features, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def reconstruction_loss(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """L(x) = mean |x - D(x)|."""
    return (d(x).float() - x.float()).abs().mean()


class Equilibrium:
    """The k_t controller. Call `update` once per step with the detached losses."""

    def __init__(self, gamma: float = 0.5, lambda_k: float = 0.001, k: float = 0.0):
        self.gamma, self.lambda_k, self.k = gamma, lambda_k, k

    def update(self, loss_real: float, loss_fake: float) -> float:
        """Advance k_t; returns the convergence measure M_global."""
        balance = self.gamma * loss_real - loss_fake
        self.k = min(max(self.k + self.lambda_k * balance, 0.0), 1.0)
        return loss_real + abs(balance)
