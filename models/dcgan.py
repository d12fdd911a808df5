"""DCGAN (Radford et al. 2016), as in the canonical PyTorch example, for 48, 64 and 128 px.

Generator: z (B, z_dim, 1, 1) -> transposed convs with BatchNorm + ReLU -> Tanh image in [-1, 1].
Discriminator: strided convs with LeakyReLU(0.2), BatchNorm except on the first layer -> one logit.
No pooling, no fully-connected hidden layers. Weights N(0, 0.02), BatchNorm weights N(1, 0.02).

One definition for every size: the first feature map is 3x3 for sizes divisible by 3 (48 = 3 x 16)
and 4x4 otherwise (64 = 4 x 16, 128 = 4 x 32); each stride-2 stage doubles it, so 128 px simply
has one stage more than 64 px. At 64 px with 64 base maps the generator's maps are 512/256/128/64,
exactly the canonical example.

The discriminator's `norm` is "batch" for the canonical DCGAN; "spectral" divides every conv's
weight by its largest singular value instead (Miyato et al. 2018, one power iteration per step):
a 1-Lipschitz D without BatchNorm coupling the samples of a batch, the default recipe's D. The
WGAN-GP critic reuses it with "layer" or "none" (a gradient penalty is per-sample).

`mbstd` > 0 appends ProGAN's minibatch standard deviation (Karras et al. 2018) before the last
conv: one channel holding how much the features vary across each group of `mbstd` images, so D
can tell a batch of near-identical fakes from a batch of varied reals.

`pack` > 1 makes D judge packs of that many images at once (PacGAN, Lin et al. 2018): each pack's
images are stacked along the channels of one input, all real or all fake, for one logit. A pack of
near-copies is easier to call fake than any one of them, so D penalises a generator that drops
modes; D's convolutions past the first see 1/pack as many inputs.

`attention` > 0 adds SAGAN's self-attention (Zhang et al. 2019) to both networks where their
feature maps are that many pixels wide: every position of the map can look at every other, so
the two eyes of a face are drawn (and judged) together rather than by convolutions that see a few
pixels each. Its output starts at zero weight (gamma 0): at the first step the networks are the
DCGAN's.

`classes` > 0 makes both networks class-conditional on that many clusters of the training faces
(a cluster-conditioned GAN, as Liu et al. 2020's self-conditioned GAN and Lucic et al. 2019): G
concatenates a learned embedding of its class to z, and D adds a projection term (Miyato & Koyama
2018), the inner product of the class's embedding with its pooled last features, to its logit. G
draws the class from z itself, by the inverse of the classes' cumulative shares applied to
Phi(z[0]), so G(z) alone samples the clusters in their real proportions: a sampler that only knows
z gets every cluster as often as the data has it. D's embedding starts at zero: at the first step
D is the unconditional DCGAN's.

Losses: the non-saturating BCE of the paper, or the hinge loss (Lim & Ye 2017; SNGAN, BigGAN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facegan.config.base import SIZES


def geometry(size: int, smallest: int = 4) -> tuple[int, int]:
    """(first feature map side, number of stride-2 stages) for an image side: the first map is
    `smallest` px (3/4 of it for sizes divisible by 3, e.g. 48 px)."""
    start = smallest * 3 // 4 if size % 3 == 0 else smallest
    stages = round(math.log2(size / start))
    if size not in SIZES or start * 2**stages != size:
        raise ValueError(f"unsupported image size {size}: use one of {SIZES}")
    return start, stages


def init_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: convs N(0, 0.02); norm weights N(1, 0.02), bias 0."""
    name = type(module).__name__
    if "Conv" in name:
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif ("BatchNorm" in name or "GroupNorm" in name) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class SelfAttention(nn.Module):
    """SAGAN's block: x + gamma * attention(x) over all H*W positions, queries and keys C/8 wide."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, max(1, channels // 8), 1, bias=False)
        self.key = nn.Conv2d(channels, max(1, channels // 8), 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = (f(x).flatten(2).transpose(1, 2) for f in (self.query, self.key, self.value))  # (B, HW, C')
        # not F.scaled_dot_product_attention: on a CPU its kernels ran 1.5-2.5x slower at these sizes
        out = torch.softmax(q @ k.transpose(1, 2), dim=-1) @ v  # (B, HW, C)
        return x + self.gamma * out.reshape(b, h, w, c).permute(0, 3, 1, 2)  # a channels_last view


CLASS_EMBEDDING = 32  # width of the generator's class embedding, concatenated to z


class Generator(nn.Module):
    def __init__(
        self,
        size: int = 64,
        z_dim: int = 100,
        features: int = 64,
        channels: int = 3,
        attention: int = 0,
        classes: int = 0,
    ):
        super().__init__()
        self.size, self.z_dim, self.classes = size, z_dim, classes
        start, stages = geometry(size)
        maps = [features * 2**i for i in reversed(range(stages))]  # 64 px: 512, 256, 128, 64
        if classes:
            self.embed = nn.Embedding(classes, CLASS_EMBEDDING)
            # cumulative class shares: uniform until set_class_shares gives the data's
            self.register_buffer("class_cdf", torch.arange(1, classes + 1, dtype=torch.float32) / classes)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim + (CLASS_EMBEDDING if classes else 0), maps[0], start, 1, 0, bias=False),
            nn.BatchNorm2d(maps[0]),
            nn.ReLU(True),
        ]
        side = start
        for c_in, c_out in zip(maps, maps[1:]):
            if side == attention:
                layers.append(SelfAttention(c_in))
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
            side *= 2
        if side == attention:
            layers.append(SelfAttention(maps[-1]))
        layers += [nn.ConvTranspose2d(maps[-1], channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def set_class_shares(self, shares: torch.Tensor) -> None:
        """How often G draws each class: the clusters' shares of the training faces."""
        shares = torch.as_tensor(shares, dtype=torch.float32).clamp(min=0)
        if shares.shape != (self.classes,) or not shares.sum() > 0:
            raise ValueError(f"need {self.classes} non-negative class shares, got shape {tuple(shares.shape)}")
        self.class_cdf.copy_(torch.cumsum(shares / shares.sum(), 0))

    def labels(self, z: torch.Tensor) -> torch.Tensor:
        """The class G draws for each latent: the inverse of the classes' cumulative shares at
        Phi(z[0]), which is uniform on (0, 1) for z ~ N(0, I)."""
        u = torch.special.ndtr(z.reshape(len(z), -1)[:, 0].float()).contiguous()
        return torch.searchsorted(self.class_cdf, u, right=True).clamp_(max=self.classes - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        if self.classes:
            z = torch.cat([z, self.embed(self.labels(z))[:, :, None, None].to(z.dtype)], 1)
        return self.main(z)


NORMS = ("batch", "spectral", "layer", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # LayerNorm over (C, H, W) with a per-channel affine
        return nn.GroupNorm(1, channels)
    if kind in ("none", "spectral"):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use one of {NORMS}")


class Discriminator(nn.Module):
    """Returns raw logits (B,); apply a sigmoid for D(x) as a probability."""

    def __init__(
        self,
        size: int = 64,
        features: int = 64,
        channels: int = 3,
        norm: str = "batch",
        mbstd: int = 0,
        attention: int = 0,
        pack: int = 1,
        classes: int = 0,
    ):
        super().__init__()
        if classes and pack > 1:
            raise ValueError("a class-conditional D judges one image per logit: use pack 1")
        self.mbstd, self.pack, self.classes = mbstd, pack, classes
        start, stages = geometry(size)
        maps = [features * 2**i for i in range(stages)]  # 64 px: 64, 128, 256, 512
        first = nn.Conv2d(channels * pack, maps[0], 4, 2, 1, bias=False)
        layers: list[nn.Module] = [first, nn.LeakyReLU(0.2, inplace=True)]
        side = size // 2
        for c_in, c_out in zip(maps, maps[1:]):
            if side == attention:
                layers.append(SelfAttention(c_in))
            side //= 2
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm != "batch"),
                _norm(norm, c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(maps[-1] + (1 if mbstd else 0), 1, start, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)
        if classes:  # the projection's class embeddings, zero: D starts unconditional
            self.embed = nn.Embedding(classes, maps[-1])
            nn.init.zeros_(self.embed.weight)
        if norm == "spectral":
            for layer in self.main:
                if isinstance(layer, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B / pack,): images i*pack .. i*pack + pack - 1 form pack i. A class-conditional
        D (classes > 0) needs each image's class."""
        if self.pack > 1:
            last = x.is_contiguous(memory_format=torch.channels_last)
            x = x.reshape(-1, self.pack * x.size(1), *x.shape[2:])
            x = x.contiguous(memory_format=torch.channels_last) if last else x
        if not (self.mbstd or self.classes):
            return self.main(x).flatten()
        features = self.main[:-1](x)
        logits = self.main[-1](minibatch_stddev(features, self.mbstd) if self.mbstd else features).flatten()
        if self.classes:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs the images' classes")
            logits = logits + (self.embed(labels) * features.float().sum((2, 3))).sum(1)
        return logits


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """x (B, C, H, W) with one channel more: the standard deviation of every feature over a group
    of images (i, i + B/g, ...), averaged over features and positions, broadcast to the group. The
    group shrinks to a divisor of B (a batch of one gets 0)."""
    b, _, h, w = x.shape
    g = min(group, b)
    while b % g:
        g -= 1
    y = x.float().reshape(g, -1, *x.shape[1:])
    std = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (B/g,)
    channel = std.repeat(g).to(x.dtype)[:, None, None, None].expand(b, 1, h, w)
    return torch.cat([x, channel], 1)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN discriminator loss: BCE(D(x), 1) + BCE(D(G(z)), 0)."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: BCE(D(G(z)), 1) (the reals' logits are not used)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge discriminator loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Hinge generator loss: -E[D(G(z))] (the reals' logits are not used)."""
    return -fake_logits.mean()


def rpgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing loss (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): D must rank
    each real above the fake it is paired with, E[softplus(D(G(z_i)) - D(x_i))]; unlike BCE it has
    no mode-dropping optimum where a few fakes sit above every real."""
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing generator loss: E[softplus(D(x_i) - D(G(z_i)))]."""
    return F.softplus(real_logits - fake_logits).mean()


def mode_seeking_loss(images: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mode-seeking term (Mao et al. 2019, MSGAN): pairs the batch's two halves and penalises
    images that differ less than their latents, 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2|).
    A batch of one has no pair: 0."""
    half = images.size(0) // 2
    if half == 0:
        return images.new_zeros(())
    image_gap = (images[:half] - images[half : 2 * half]).abs().flatten(1).mean(1)
    z_gap = (z[:half] - z[half : 2 * half]).abs().flatten(1).mean(1)
    return (1.0 / (image_gap / z_gap + eps)).mean()


def gradient_norm_penalty(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] at the images D judged (which require grad): R1 on reals (Mescheder
    et al. 2018), R2 on fakes (R3GAN). Zero-centred, unlike WGAN-GP's one-centred penalty: it damps
    D's gradient where the data is instead of holding it at 1. Keeps the graph (D's loss uses it)."""
    (grad,) = torch.autograd.grad(logits.float().sum(), images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


LOSSES = {"bce": (d_loss, g_loss), "hinge": (hinge_d_loss, hinge_g_loss), "rpgan": (rpgan_d_loss, rpgan_g_loss)}
