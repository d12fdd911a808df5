"""WGAN-GP (Gulrajani et al. 2017): the DCGAN generator against a critic without BatchNorm.

The critic is the DCGAN discriminator with LayerNorm (or no normalisation): the gradient penalty
is taken per sample, and BatchNorm would couple the samples of a batch. Its output is an
unbounded score, not a probability. Recipe: lambda 10, 5 critic steps per generator step,
Adam lr 1e-4, betas (0, 0.9).
"""

from __future__ import annotations

import torch

from facegan.models.dcgan import Discriminator, Generator

__all__ = ["Generator", "Critic", "critic_loss", "generator_loss", "gradient_penalty"]


class Critic(Discriminator):
    def __init__(self, size: int = 64, features: int = 64, channels: int = 3, norm: str = "layer"):
        if norm == "batch":
            raise ValueError("the WGAN-GP critic must not use BatchNorm: use layer or none")
        super().__init__(size, features, channels, norm)


def gradient_penalty(
    critic: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)||_2 - 1)^2] on random interpolates x_hat of real and fake."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device, generator=generator)
    x_hat = (alpha * real.detach().float() + (1 - alpha) * fake.detach().float()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic maximises E[C(x)] - E[C(G(z))]: minimise its negative."""
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.float().mean()
