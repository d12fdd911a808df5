"""One training iteration per GAN type: D/critic update(s), then one generator update.

Each update function takes the `Parts` of a run and a `next_real()` callable (the next batch of
real images) and returns plain-float metrics: loss_d, loss_g, d_x, d_g_z plus model extras.
Meanings: DCGAN d_x / d_g_z = mean sigmoid(D(.)) (the canonical example's D(x), D(G(z)));
WGAN-GP = mean critic scores; BEGAN = L1 reconstruction errors L(x), L(G(z)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from facegan.models import began as began_losses
from facegan.models import dcgan as dcgan_losses
from facegan.models import wgan_gp as wgan_losses
from facegan.models.coverage import LatentBank, coverage_loss
from facegan.models.diffaugment import diff_augment
from facegan.models.ema import EMA
from facegan.tasks.training.device import autocast


@dataclass
class Parts:
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    ema: EMA | None
    device: torch.device
    amp: torch.dtype | None
    z_dim: int
    d_steps: int = 1
    augment: str = ""
    gp_lambda: float = 10.0
    gp_every: int = 1  # WGAN-GP: the penalty on every Nth critic update, weighted N x (lazy)
    step: int = 0  # generator updates done before this one (set by the loop)
    loss: str = "bce"
    mode_seeking: float = 0.0  # weight of the mode-seeking term in G's loss (MSGAN)
    r1: float = 0.0  # gamma of the zero-centred gradient penalty on reals (D's loss += gamma/2 * R1)
    r2: float = 0.0  # the same on fakes
    r_every: int = 1  # R1/R2 on every Nth D update only, weighted N x (lazy, as gp_every)
    classes: int = 0  # a cluster-conditioned G and D: next_real(labelled=True) gives the reals' clusters
    coverage: float = 0.0  # weight of the coverage (IMLE) term in G's loss (models/coverage.py)
    coverage_every: int = 1  # the term on every Nth G update only, weighted N x (lazy)
    feature_space: nn.Module | None = None  # the coverage term's frozen features
    bank: LatentBank | None = None  # the coverage term's candidates: the latents of G's last fakes
    equilibrium: began_losses.Equilibrium | None = None
    sync: Callable[[torch.optim.Optimizer], None] | None = None  # averages gradients across ranks

    def noise(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.z_dim, device=self.device)
        if self.classes and self.mode_seeking:
            # the mode-seeking pairs (the batch's two halves) share their class (G draws it from
            # z[0]): pairs of two classes differ anyway, and the term would ask nothing of z within one
            half = n // 2
            z[half : 2 * half, 0] = z[:half, 0]
        return z

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.augment) if self.augment else x

    def update(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.sync is not None:
            self.sync(opt)
        opt.step()


def dcgan_update(p: Parts, next_real: Callable[[], torch.Tensor]) -> dict[str, float]:
    d_loss, _ = dcgan_losses.LOSSES[p.loss]
    p.D.requires_grad_(True)
    for i in range(p.d_steps):
        # a cluster-conditioned D judges each image with its class: the reals' clusters, the
        # classes G drew for its latents (None: unconditional)
        real, real_y = next_real(labelled=True) if p.classes else (next_real(), None)
        penalised = (p.step * p.d_steps + i) % p.r_every == 0  # lazy: every r_every-th D update
        with_r1, with_r2 = penalised and p.r1 > 0, penalised and p.r2 > 0
        with autocast(p.device, p.amp):
            z = p.noise(real.size(0))
            fake = p.G(z)
            fake_y = p.G.labels(z) if p.classes else None
            # the penalties differentiate D's own logits with respect to the images it judged
            real_in = _differentiable(p.aug(real), with_r1)
            fake_in = _differentiable(p.aug(fake.detach()), with_r2)
            real_logits = _judge(p, real_in, real_y)
            fake_logits = _judge(p, fake_in, fake_y)
            loss_d = d_loss(real_logits.float(), fake_logits.float())
            penalties = {}
            if with_r1:
                penalties["r1"] = dcgan_losses.gradient_norm_penalty(real_logits, real_in)
                loss_d = loss_d + p.r1 / 2 * p.r_every * penalties["r1"]
            if with_r2:
                penalties["r2"] = dcgan_losses.gradient_norm_penalty(fake_logits, fake_in)
                loss_d = loss_d + p.r2 / 2 * p.r_every * penalties["r2"]
        p.update(p.opt_d, loss_d)
    p.D.requires_grad_(False)  # no weight gradients for D during the G update
    with autocast(p.device, p.amp):
        gen_logits = _judge(p, p.aug(fake), fake_y)
    metrics = _generator_update(p, gen_logits, fake, z, loss_d, real_logits, fake_logits, real)
    return {**metrics, **{name: penalty.item() for name, penalty in penalties.items()}}


def _judge(p: Parts, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """D's logits; a cluster-conditioned D also gets the images' classes (any other D, the
    projected one included, only the images)."""
    return p.D(images) if labels is None else p.D(images, labels)


def _differentiable(images: torch.Tensor, wanted: bool) -> torch.Tensor:
    """The images as a leaf that requires grad, when a penalty needs D's gradient at them."""
    return images.detach().requires_grad_() if wanted else images


def projected_update(p: Parts, next_real: Callable[[], torch.Tensor]) -> dict[str, float]:
    """dcgan_update for a projected discriminator (models/projected.py), whose frozen feature network
    is most of D's cost: the last D update's fakes go through it once, with their graph; the heads
    judge those features detached in D's update and again, updated, in G's (the same augmented
    fakes), so G's gradient flows back through the features already computed."""
    d_loss, _ = dcgan_losses.LOSSES[p.loss]
    p.D.requires_grad_(True)
    for i in range(p.d_steps):
        real = next_real()
        last = i == p.d_steps - 1
        with autocast(p.device, p.amp):
            z = p.noise(real.size(0))
            with torch.set_grad_enabled(last):
                raw = p.G(z)
                fake = p.aug(raw)
                fake_features = p.D.project(fake)
            with torch.no_grad():
                real = p.aug(real)
                real_features = p.D.project(real)
            real_logits = p.D.judge(real_features, real)
            fake_logits = p.D.judge([f.detach() for f in fake_features], fake.detach())
            loss_d = d_loss(real_logits.float(), fake_logits.float())
        p.update(p.opt_d, loss_d)
    p.D.requires_grad_(False)
    with autocast(p.device, p.amp):
        gen_logits = p.D.judge(fake_features, fake)
    return _generator_update(p, gen_logits, raw, z, loss_d, real_logits, fake_logits)


def _generator_update(
    p: Parts,
    gen_logits: torch.Tensor,
    fake: torch.Tensor,
    z: torch.Tensor,
    loss_d: torch.Tensor,
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    real: torch.Tensor | None = None,
) -> dict[str, float]:
    """G's update from D's logits on its fakes (plus the mode-seeking term, and on every
    coverage_every-th update the coverage term for D's last real batch), and the DCGAN metrics.
    A relativistic loss pairs them with D's logits on the reals from D's last update (one D
    forward saved; D has moved one step since)."""
    _, g_loss = dcgan_losses.LOSSES[p.loss]
    extras = {}
    with autocast(p.device, p.amp):
        loss_g = g_loss(gen_logits.float(), real_logits.detach().float())
        if p.mode_seeking:
            ms = dcgan_losses.mode_seeking_loss(fake.float(), z)
            loss_g = loss_g + p.mode_seeking * ms
            extras["mode_seeking"] = ms.item()
        if p.bank is not None and real is not None:
            with torch.no_grad():
                p.bank.add(z, p.feature_space(fake.detach()))
            if p.step % p.coverage_every == 0:
                term = coverage_loss(p.feature_space, real, p.G, p.bank)
                loss_g = loss_g + p.coverage * p.coverage_every * term
                extras["coverage"] = term.item()
    p.update(p.opt_g, loss_g)
    return {
        **extras,
        "loss_d": loss_d.item(),
        "loss_g": loss_g.item(),
        "d_x": torch.sigmoid(real_logits.float()).mean().item(),
        "d_g_z": torch.sigmoid(fake_logits.float()).mean().item(),
        "d_g_z2": torch.sigmoid(gen_logits.float()).mean().item(),
    }


def wgan_gp_update(p: Parts, next_real: Callable[[], torch.Tensor]) -> dict[str, float]:
    p.D.requires_grad_(True)
    penalty = None  # the last critic update's, when it computed one
    for i in range(p.d_steps):
        real = next_real()
        last = i == p.d_steps - 1
        with autocast(p.device, p.amp):
            # the last critic update's fakes keep their graph: the generator update reuses them
            with torch.set_grad_enabled(last):
                fake = p.G(p.noise(real.size(0)))
            real_scores = p.D(p.aug(real)).float()
            fake_scores = p.D(p.aug(fake.detach())).float()
            loss_d = wgan_losses.critic_loss(real_scores, fake_scores)
            # lazy regularisation (StyleGAN2): the penalty on every gp_every-th critic update,
            # weighted gp_every times, costs 1/gp_every of its double backward
            if (p.step * p.d_steps + i) % p.gp_every == 0:
                gp = wgan_losses.gradient_penalty(p.D, real, fake)
                loss_d = loss_d + p.gp_lambda * p.gp_every * gp
                penalty = gp.item()
        p.update(p.opt_d, loss_d)
    p.D.requires_grad_(False)
    with autocast(p.device, p.amp):
        gen_scores = p.D(p.aug(fake)).float()
        loss_g = wgan_losses.generator_loss(gen_scores)
    p.update(p.opt_g, loss_g)
    d_x, d_g_z = real_scores.mean().item(), fake_scores.mean().item()
    metrics = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_x": d_x, "d_g_z": d_g_z, "wasserstein": d_x - d_g_z}
    if penalty is not None:  # a lazy penalty (--gp-every) is logged on the steps that computed one
        metrics["gp"] = penalty
    return metrics


def began_update(p: Parts, next_real: Callable[[], torch.Tensor]) -> dict[str, float]:
    eq = p.equilibrium
    p.D.requires_grad_(True)
    for _ in range(p.d_steps):
        real = next_real()
        with autocast(p.device, p.amp):
            fake = p.G(p.noise(real.size(0)))
            loss_real = began_losses.reconstruction_loss(p.D, p.aug(real))
            loss_fake = began_losses.reconstruction_loss(p.D, p.aug(fake.detach()))
            loss_d = loss_real - eq.k * loss_fake
        p.update(p.opt_d, loss_d)
    p.D.requires_grad_(False)
    with autocast(p.device, p.amp):
        loss_g = began_losses.reconstruction_loss(p.D, p.aug(fake))
    p.update(p.opt_g, loss_g)
    k_used = eq.k
    m_global = eq.update(loss_real.item(), loss_g.item())
    return {
        "loss_d": loss_d.item(),
        "loss_g": loss_g.item(),
        "d_x": loss_real.item(),
        "d_g_z": loss_fake.item(),
        "k_t": k_used,
        "M_global": m_global,
    }
