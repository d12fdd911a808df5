"""What names and paces a training run: the recipe fields whose values name it, the intervals
counted in images, the kimg formula, the DiffAugment policies. A leaf of config/train.py."""

from __future__ import annotations

from typing import Any

DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> list[str]:
    """A DiffAugment policy "color,translation,cutout" as a list of known names."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in DIFFAUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}: use a comma list of {DIFFAUGMENT_POLICIES}")
    return names


# Intervals left unset are counted in images shown to D, not in steps, so a small batch does not
# sample (an EMA sample recomputes its BatchNorm statistics over 1024 images), checkpoint or score
# more often per image than a large one.
EVERY_IMAGES = {"sample_every": 6_400, "checkpoint_every": 32_000, "score_every": 20_000}


# Fields that define WHAT is trained. The default run name hashes them, so rerunning the same
# command resumes the same run, and changing the recipe starts a new one.
RECIPE_FIELDS = (
    "dataset",
    "size",
    "model",
    "recipe",
    "batch_size",
    "lr",
    "lr_d",
    "beta1",
    "beta2",
    "d_steps",
    "z_dim",
    "features",
    "d_norm",
    "loss",
    "critic_norm",
    "gp_lambda",
    "gp_every",
    "gamma",
    "lambda_k",
    "ema",
    "ema_decay",
    "diffaugment",
    "lr_decay",
    "lr_decay_every",
    "lr_rampdown",
    "precision",
    "seed",
    "d_input",
    "d_width",
    "d_balance",
    "d_pixel",
    "mode_seeking",
    "d_mbstd",
    "d_pack",
    "r1",
    "r2",
    "r_every",
    "attention",
    "clusters",
    "coverage",
    "coverage_every",
    "coverage_pool",
)

# Recipe fields added after runs were first named: at these values they leave the name unchanged,
# so the commands of existing runs still resume them.
NAME_NEUTRAL = {
    "gp_every": 1,
    "lr_rampdown": 0.0,
    "d_input": None,
    "d_width": None,
    "d_balance": False,
    "d_pixel": 0.0,
    "mode_seeking": 0.0,
    "d_mbstd": 0,
    "d_pack": 1,
    "coverage": 0.0,
    "coverage_every": 4,
    "coverage_pool": 1024,
    "r1": 0.0,
    "r2": 0.0,
    "r_every": 1,
    "attention": 0,
    "clusters": 0,
}


def kimg_of(batches: int, batch_size: int, ranks: int = 1) -> float:
    """Thousands of real images shown to D: real batches drawn (d_steps per generator step), on
    every rank. The one kimg formula: budgets, logs and checkpoints all use it."""
    return batches * batch_size * ranks / 1000


def intervals_in_images(data: dict[str, Any]) -> dict[str, int]:
    """The unset EVERY_IMAGES intervals in steps for this batch (none while the batch, D steps or
    ranks are invalid: field validation then says which)."""
    try:
        images = int(data["batch_size"]) * int(data["d_steps"]) * int(data.get("nproc") or 1)
        kimg = float(data["kimg"]) if data.get("kimg") is not None else None
    except (TypeError, ValueError):
        return {}
    if images <= 0:
        return {}
    out = {k: max(1, int(every / images + 0.5)) for k, every in EVERY_IMAGES.items() if data.get(k) is None}
    if "score_every" in out and kimg is not None and kimg * 1000 < 2 * EVERY_IMAGES["score_every"]:
        out["score_every"] = 0  # one point is no curve: a 20 kimg run goes straight to Table 1
    return out
