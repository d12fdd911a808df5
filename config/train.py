"""Config of `facegan train`: the model recipes and their defaults."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from facegan.config.base import Device, Size, StageConfig, check_name
from facegan.config.gans import DCGAN_RECIPES, DEFAULT_MODEL, GANS, IMAGENET_WHEELS, defaults_text
from facegan.config.recipe import NAME_NEUTRAL, RECIPE_FIELDS, intervals_in_images, kimg_of, parse_policy

Model = Literal[tuple(GANS)]  # type: ignore[valid-type]

# A field left at None takes its model's (and, for DCGAN, its --recipe's) value from the GAN
# registry (config/gans.py); the resolved values are what is logged to MLflow.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: gan.defaults for name, gan in GANS.items()}
Recipe = Literal[tuple(DCGAN_RECIPES)]  # type: ignore[valid-type]


class TrainConfig(StageConfig):
    """Train a GAN (DCGAN, WGAN-GP, BEGAN or Projected GAN) on one crop dataset and log it to MLflow.

    Training stops at the first budget reached: --steps, --kimg, --epochs, --cpu-minutes (CPU time
    of the training steps, cumulative over resumes; for equal-budget comparisons) or --minutes
    (their wall-clock time: a bound on the wait). Rerunning the same command resumes the same run
    from its latest checkpoint (same step, same MLflow run); --name picks a run explicitly. Prints
    the MLflow run id."""

    dataset: str | None = Field(
        None, description="crop dataset name or path (default: the only or most recent dataset)"
    )
    size: Size = Field(64, description="image size in px")
    model: Model = Field(
        DEFAULT_MODEL, description="GAN to train: " + "; ".join(f"{name}: {gan.summary}" for name, gan in GANS.items())
    )
    recipe: Recipe = Field(
        "default",
        description="DCGAN recipe: default (the paper's DCGAN + generator EMA + a learning-rate ramp-down to 0 over "
        "the last quarter of the budget, --lr-rampdown 0.25), canonical (the paper's DCGAN, constant learning rate) or "
        "augmented (spectral-norm hinge D, TTUR, DiffAugment, EMA, constant learning rate); see docs/train.md. "
        "Single options below override it",
    )
    kimg: float | None = Field(
        None, gt=0, description="budget in thousands of real images shown to D (steps x batch x D steps / 1000)"
    )
    steps: int | None = Field(
        None, ge=1, description="generator updates to train for (default 3000 when no budget is given)"
    )
    epochs: float | None = Field(None, gt=0, description="passes over the dataset to train for")
    cpu_minutes: float | None = Field(None, gt=0, description="CPU-time budget of the training steps, in minutes")
    minutes: float | None = Field(
        None,
        gt=0,
        description="wall-clock budget of the training steps, in minutes (a bound on the wait: a slower or "
        "busier machine trains fewer images in it)",
    )
    batch_size: int | None = Field(None, ge=1, le=4096, description=f"batch size ({defaults_text('batch_size')})")
    device: Device = Field("auto", description="device: auto picks CUDA, then MPS, then CPU")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="auto: bf16 autocast on CUDA and on CPUs with bf16 units (AVX512-BF16/AMX), fp32 "
        "elsewhere (emulated bf16 is ~12x slower); bf16 or fp32 force one",
    )
    channels_last: bool = Field(True, description="channels_last memory format (faster convs on CPU)")
    nproc: int = Field(
        1,
        ge=1,
        le=64,
        description="data-parallel processes launched with torchrun (one per GPU; on CPU, gloo); rank 0 logs and "
        "checkpoints",
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="torch CPU threads (default: the cores not busy right now)"
    )
    resume: bool = Field(False, description="require an existing checkpoint and continue from it")
    name: str | None = Field(None, description="run name (default: <dataset>-<size>-<model>-<recipe hash>)")
    lr: float | None = Field(None, gt=0, lt=1, description=f"Adam learning rate ({defaults_text('lr')})")
    lr_d: float | None = Field(
        None, gt=0, lt=1, description="discriminator learning rate when it differs from --lr (TTUR; default: --lr)"
    )
    beta1: float | None = Field(None, ge=0, lt=1, description=f"Adam beta1 ({defaults_text('beta1')})")
    beta2: float | None = Field(None, ge=0, lt=1, description=f"Adam beta2 ({defaults_text('beta2')})")
    d_steps: int | None = Field(
        None,
        ge=1,
        le=100,
        description=f"discriminator/critic updates per generator update ({defaults_text('d_steps')})",
    )
    z_dim: int | None = Field(None, ge=1, le=4096, description=f"latent size ({defaults_text('z_dim')})")
    features: int | None = Field(None, ge=4, le=1024, description=f"base feature maps ({defaults_text('features')})")
    d_norm: Literal["batch", "spectral", "none"] | None = Field(
        None, description="DCGAN discriminator normalisation: batch (canonical, default) or spectral (augmented)"
    )
    loss: Literal["bce", "hinge", "rpgan"] | None = Field(
        None,
        description="DCGAN loss: bce (non-saturating; canonical, default), hinge (augmented) or rpgan (relativistic "
        "pairing, R3GAN: each fake judged against a real); WGAN-GP and BEGAN use their own",
    )
    d_input: int | None = Field(
        None, ge=32, le=512, description="projected: image side fed to the frozen feature network (default: --size)"
    )
    d_width: float | None = Field(
        None, gt=0, le=4, description="projected: width multiplier of the trainable discriminator heads (default 0.5)"
    )
    d_balance: bool = Field(
        False,
        description="projected: every feature scale's head weighs equally in D's loss (at 64 px the deepest, "
        "whole-face head has 1 of 76 patch logits)",
    )
    d_pixel: float = Field(
        0.0,
        ge=0,
        le=16,
        description="projected: also judge the pixels with a DCGAN discriminator trained from scratch (spectral "
        "norm), weighted this much against the feature heads (0 = off; vision-aided GAN, Kumari et al. 2022)",
    )
    mode_seeking: float | None = Field(
        None,
        ge=0,
        description="weight of the mode-seeking term in the generator's loss (MSGAN: penalises images that differ "
        f"less than their latents; DCGAN and projected) ({defaults_text('mode_seeking')})",
    )
    d_mbstd: int = Field(
        0,
        ge=0,
        le=64,
        description="DCGAN: give D a minibatch standard-deviation channel over groups of this many images "
        "(ProGAN; 0 = off)",
    )
    d_pack: int = Field(
        1,
        ge=1,
        le=8,
        description="DCGAN: D judges packs of this many images stacked along the channels, one logit per pack "
        "(PacGAN; 1 = off; divides --batch-size)",
    )
    attention: int = Field(
        0,
        ge=0,
        le=64,
        description="DCGAN: SAGAN self-attention in G and D at their feature maps this many px wide "
        "(8, 16 or 32 at 64 px; 0 = off)",
    )
    clusters: int = Field(
        0,
        ge=0,
        le=256,
        description="DCGAN: condition G and D on this many k-means clusters of the training faces' frozen ImageNet "
        "features; G draws them in the data's proportions (a cluster-conditioned GAN; 0 = off)",
    )
    coverage: float = Field(
        0.0,
        ge=0,
        le=100,
        description="DCGAN: weight of a coverage term in G's loss: each real face's nearest of the last "
        "--coverage-pool generated faces, in frozen ImageNet features, is pulled towards it (IMLE, Inclusive GAN; "
        "0 = off)",
    )
    coverage_every: int = Field(
        4, ge=1, le=64, description="DCGAN: the coverage term on every Nth generator update only, weighted N x (lazy)"
    )
    coverage_pool: int = Field(
        1024,
        ge=1,
        le=65536,
        description="DCGAN: the coverage term picks each real face's nearest among the generator's last this many "
        "faces (their latents, kept in a bank)",
    )
    r1: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="DCGAN: gamma of the R1 penalty, gamma/2 * E||grad D(x)||^2 on the reals in D's loss "
        "(Mescheder et al. 2018; 0 = off)",
    )
    r2: float = Field(
        0.0, ge=0, le=1000, description="DCGAN: gamma of the R2 penalty, the same on the fakes (R3GAN; 0 = off)"
    )
    r_every: int = Field(
        1,
        ge=1,
        le=64,
        description="DCGAN: compute R1/R2 on every Nth discriminator update only, weighted N x (lazy "
        "regularisation, StyleGAN2; 1 = every update)",
    )
    critic_norm: Literal["layer", "none"] = Field("layer", description="WGAN-GP critic normalisation")
    gp_lambda: float = Field(10.0, ge=0, description="WGAN-GP gradient-penalty weight")
    gp_every: int = Field(
        1,
        ge=1,
        le=64,
        description="WGAN-GP: compute the gradient penalty on every Nth critic update only, weighted N x (lazy "
        "regularisation; 1 "
        "= every update, the paper)",
    )
    gamma: float = Field(0.5, gt=0, le=1, description="BEGAN diversity ratio gamma")
    lambda_k: float = Field(0.001, ge=0, description="BEGAN k_t learning rate")
    ema: bool | None = Field(
        None,
        description="keep an EMA of the generator (used for samples, checkpoints and evaluation; off in the "
        "canonical recipe)",
    )
    ema_decay: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="generator EMA decay per step, after a warm-up of min(decay, (1+t)/(10+t)) (default recipe "
        "0.9997: half-life 2310 steps, 18.5 kimg at batch 8; augmented 0.995: 138 steps, 8.9 kimg at batch 64)",
    )
    diffaugment: str | None = Field(
        None,
        description="DiffAugment policy, a comma list of color, translation, cutout; '' = off (augmented recipe: all "
        "three)",
    )
    lr_decay: float = Field(
        1.0, gt=0, le=1, description="multiply the learning rates by this every --lr-decay-every steps (the paper: 0.9)"
    )
    lr_decay_every: int = Field(2000, ge=1, description="steps between learning-rate decays")
    lr_rampdown: float | None = Field(
        None,
        ge=0,
        le=1,
        description="ramp both learning rates linearly down to 0 over this fraction of the budget, at its end "
        "(default recipe "
        "0.25; 0 = constant: the canonical and augmented recipes, WGAN-GP, BEGAN)",
    )
    seed: int = Field(0, ge=0, description="random seed (runs are reproducible on CPU)")
    log_every: int = Field(20, ge=1, description="log losses, D(x), D(G(z)) to MLflow every N steps")
    sample_every: int | None = Field(
        None,
        ge=1,
        description="save a fixed-noise 8x8 sample grid every N steps (default: every 6.4 kimg, 100 steps at batch 64)",
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="write a checkpoint every N steps, and at the end (default: every 32 kimg, 500 steps at batch 64)",
    )
    checkpoint_minutes: float = Field(
        10.0,
        ge=0,
        description="also write a checkpoint once this many minutes have passed since the last one, "
        "so a killed slow run loses at most that much (0 = only every --checkpoint-every steps)",
    )
    keep_checkpoints: int = Field(
        3,
        ge=1,
        description="how many checkpoints of the --checkpoint-every interval to keep (plus best.pt and the newest)",
    )
    score_every: int | None = Field(
        None,
        ge=0,
        description="score realism (face_recognition detection rate) every N steps, 0 = off "
        "(dcgan: every 20 kimg, 313 steps at batch 64, off for a --kimg budget under 40; others: off)",
    )
    score_samples: int = Field(256, ge=8, le=10000, description="samples per realism score")
    register_model: bool = Field(
        True, description="register the generator in the MLflow model registry as facegan-<model>-<size>"
    )

    @model_validator(mode="before")
    @classmethod
    def _model_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            gan = GANS.get(data.get("model") or DEFAULT_MODEL, GANS[DEFAULT_MODEL])
            defaults = {**gan.defaults, **gan.recipes.get(data.get("recipe") or gan.default_recipe, {})}
            data = {**data, **{k: v for k, v in defaults.items() if data.get(k) is None}}
            data = {**data, **intervals_in_images(data)}
        return data

    @model_validator(mode="after")
    def _wheels_installed(self) -> TrainConfig:
        import importlib.util

        needs = [(f"--model {self.model}", GANS[self.model].requires)]
        for flag, used in (("--clusters", self.clusters), ("--coverage", self.coverage)):
            needs += [(flag, IMAGENET_WHEELS)] if used else []
        for who, wheels in needs:
            for wheel in wheels:
                if importlib.util.find_spec(wheel) is None:
                    raise ValueError(f"{who} needs the wheel {wheel.replace('_', '-')}: run ./setup.sh")
        return self

    @model_validator(mode="after")
    def _options_of_the_dcgan_discriminator(self) -> TrainConfig:
        gan = GANS[self.model]
        needs = (
            ("--r1 and --r2 need", self.r1 or self.r2, gan.update.endswith(":dcgan_update")),  # it computes them
            ("--d-pack needs", self.d_pack > 1, "d_pack" in gan.discriminator_args.values()),  # its D takes it
            ("--coverage needs", self.coverage, gan.update.endswith(":dcgan_update")),  # it computes it
        )
        for flags, used, supported in needs:
            if used and not supported:
                raise ValueError(f"{flags} the DCGAN discriminator (--model dcgan or dcgan-fastgan), not {self.model}")
        if self.clusters and (self.model != "dcgan" or self.d_pack > 1):
            raise ValueError("--clusters needs --model dcgan with one image per D logit (--d-pack 1)")
        if self.batch_size % self.d_pack:
            raise ValueError(f"--d-pack {self.d_pack} must divide --batch-size {self.batch_size}")
        return self

    @model_validator(mode="after")
    def _attention_where_both_networks_have_that_map(self) -> TrainConfig:
        if not self.attention:
            return self
        if self.model != "dcgan":
            raise ValueError(f"--attention needs --model dcgan, not {self.model}")
        start = 3 if self.size % 3 == 0 else 4  # models/dcgan.geometry's first map
        sides = [start * 2**k for k in range(1, 8) if start * 2**k < self.size]
        if self.attention not in sides:
            raise ValueError(
                f"--attention {self.attention}: at {self.size} px use one of {sides} (px of a feature map)"
            )
        return self

    @property
    def kimg_per_step(self) -> float:
        """Real images shown to D per generator step, in thousands (all ranks)."""
        return kimg_of(self.d_steps, self.batch_size, self.nproc)

    @field_validator("diffaugment")
    @classmethod
    def _policy(cls, policy: str | None) -> str | None:
        if not policy:  # None (from the recipe) or off: no torch import for the common case
            return policy
        return ",".join(parse_policy(policy))

    @field_validator("name")
    @classmethod
    def _name(cls, name: str | None) -> str | None:
        return check_name(name) if name is not None else None

    def recipe_values(self, dataset: str) -> dict[str, Any]:
        values = self.model_dump()
        values["dataset"] = dataset
        return {k: values[k] for k in RECIPE_FIELDS}

    def run_name(self, dataset: str) -> str:
        if self.name:
            return self.name
        named = {k: v for k, v in self.recipe_values(dataset).items() if NAME_NEUTRAL.get(k, object()) != v}
        if named.get("precision") == "auto":  # runs named before auto was the default keep their names
            named["precision"] = GANS[self.model].named_precision
        digest = hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()
        return f"{dataset}-{self.size}-{self.model}-{digest[:6]}"
