"""The real images a report compares against, split deterministically from one crop dataset
(its faces array and manifest; tasks/ reads them from disk).

Held-out split: every crop is assigned to a group — its identity when the manifest has one (LFW:
the person), else its source image (sha256) — and a group is held out when
sha256("facegan-heldout:" + group) / 2**256 < held_out_fraction. All crops of one person (or one
photo) land on the same side, so a held-out face is never a different crop or photo of a
"training" person. The split depends only on the manifest, not on N, seeds or the machine.

From the held-out part, two disjoint random sets of n crops (seeded):
    control   — the real-data control row (scored exactly like a generator's samples);
    reference — what every row is compared to (Fréchet distance, precision/recall), so the
                control row's Fréchet distance is the noise floor (real vs disjoint real, same n).
"training" — every crop not held out: the faces the memorisation column measures distances to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from facegan.config.errors import InputError

SALT = "facegan-heldout:"


@dataclass
class RealSets:
    control: np.ndarray  # uint8 (n_real, size, size, 3)
    reference: np.ndarray  # uint8 (n_real, size, size, 3), disjoint from control
    training: np.ndarray  # uint8 (N_train, size, size, 3): the non-held-out crops
    info: dict  # counts and how the split was made


def group_keys(manifest: pd.DataFrame) -> pd.Series:
    """Identity when known, else the source image's sha256 (else its path), per crop."""
    keys = pd.Series([None] * len(manifest), index=manifest.index, dtype=object)
    for column, prefix in (("identity", "id:"), ("source_sha256", "img:"), ("sha256", "img:"), ("source", "img:")):
        if column in manifest.columns:
            values = manifest[column]
            usable = values.notna() & (values.astype(str).str.strip() != "") & keys.isna()
            keys[usable] = prefix + values[usable].astype(str)
    missing = keys.isna()
    keys[missing] = "row:" + manifest.index[missing].astype(str)
    return keys


def held_out_mask(manifest: pd.DataFrame, fraction: float) -> np.ndarray:
    """Boolean per crop: True when its group is held out."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"held-out fraction must be between 0 and 1, got {fraction}")
    cut = int(fraction * 2**64)
    keys = group_keys(manifest)
    held = {k: int.from_bytes(hashlib.sha256((SALT + k).encode()).digest()[:8], "big") < cut for k in keys.unique()}
    return keys.map(held).to_numpy(dtype=bool)


def real_sets(
    faces: np.ndarray,
    manifest: pd.DataFrame,
    n: int,
    fraction: float = 0.2,
    seed: int = 0,
    max_training: int | None = None,
    name: str = "the dataset",
) -> RealSets:
    """Control, reference and training sets from a dataset's faces and manifest (see module doc).

    When the held-out part has fewer than 2n crops, control and reference get half of it each."""
    held = held_out_mask(manifest, fraction)
    held_idx, train_idx = np.flatnonzero(held), np.flatnonzero(~held)
    if len(held_idx) < 4 or len(train_idx) < 2:
        raise InputError(
            f"{name}: only {len(held_idx)} held-out and {len(train_idx)} training crops "
            f"with held-out fraction {fraction}; the dataset is too small to evaluate against"
        )
    n_real = min(n, len(held_idx) // 2)
    rng = np.random.default_rng(seed)
    picked = rng.permutation(held_idx)
    control_idx, reference_idx = np.sort(picked[:n_real]), np.sort(picked[n_real : 2 * n_real])
    if max_training is not None and len(train_idx) > max_training:
        train_idx = np.sort(rng.choice(train_idx, size=max_training, replace=False))
    keys = group_keys(manifest)
    by_identity = keys.str.startswith("id:")
    split_by = (
        "identity" if by_identity.all() else "source image" if not by_identity.any() else "identity (else source image)"
    )
    info = {
        "crops": len(faces),
        "held_out_fraction": fraction,
        "held_out_crops": int(len(held_idx)),
        "training_crops": int(len(train_idx)),
        "n_real": int(n_real),
        "split": "by identity (else source image), sha256 hash",
        "split_by": split_by,
        "groups": int(keys.nunique()),
        "held_out_groups": int(keys[held].nunique()),
        "training_groups": int(keys[~held].nunique()),
    }
    return RealSets(
        np.asarray(faces[control_idx]), np.asarray(faces[reference_idx]), np.asarray(faces[train_idx]), info
    )
