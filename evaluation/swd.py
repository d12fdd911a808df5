"""Multi-scale sliced Wasserstein distance (SWD) between two image sets (Karras et al. 2018,
"Progressive Growing of GANs", section 5): a yardstick independent of face_recognition.

Each image set becomes a Laplacian pyramid (5x5 binomial filter, as cv2.pyrDown/pyrUp) from the
full resolution down to 16 px. At every level, 128 random 7x7 neighbourhoods per image are
taken as 147-d descriptors, normalised per colour channel (each set by its own mean and standard
deviation, as the reference code does; the same positions in both sets), and the sliced
Wasserstein distance between the two descriptor sets is the mean over 4 x 128 random unit
directions of the 1-D Wasserstein distance of the projections (sorted projections, mean
absolute difference). Reported x 1e3 per level, and their mean. Equal-size sets; seeded, so
the same sets give the same number.

    distances = swd(real_uint8_nhwc, fake_uint8_nhwc)     # {"swd_64": .., "swd_32": .., "swd_16": .., "swd": mean}
"""

from __future__ import annotations

import cv2
import numpy as np

from facegan.config.errors import InputError

NHOOD = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16


def laplacian_pyramid(images: np.ndarray) -> list[np.ndarray]:
    """float32 (N, H, W, C) images -> [band at H, band at H/2, ..., Gaussian residual at >= 16 px]."""
    levels = []
    res = images.shape[1]
    while res >= MIN_RESOLUTION:
        levels.append(res)
        res //= 2
    current = [np.float32(im) for im in images]
    pyramid = []
    for _ in levels[:-1]:
        down = [cv2.pyrDown(im) for im in current]
        band = [im - cv2.pyrUp(d, dstsize=(im.shape[1], im.shape[0])).reshape(im.shape) for im, d in zip(current, down)]
        pyramid.append(np.stack(band))
        current = [d.reshape(d.shape[0], d.shape[1], -1) for d in down]
    pyramid.append(np.stack(current))
    return pyramid


def descriptors(level: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The NHOOD x NHOOD neighbourhoods centred at (ys, xs) (NHOODS_PER_IMAGE per image, in image
    order), normalised per channel: (N * NHOODS_PER_IMAGE, NHOOD * NHOOD * C) float32."""
    n = level.shape[0]
    half = NHOOD // 2
    img = np.repeat(np.arange(n), NHOODS_PER_IMAGE)
    offsets = np.arange(-half, half + 1)
    rows = (ys[:, None] + offsets[None, :])[:, :, None]
    cols = (xs[:, None] + offsets[None, :])[:, None, :]
    patches = level[img[:, None, None], rows, cols]  # (count, NHOOD, NHOOD, C)
    patches = patches - patches.mean(axis=(0, 1, 2), keepdims=True)
    patches = patches / np.maximum(patches.std(axis=(0, 1, 2), keepdims=True), 1e-8)
    return patches.reshape(len(ys), -1).astype(np.float32)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """Mean 1-D Wasserstein distance of a's and b's projections on random unit directions."""
    results = []
    for _ in range(DIR_REPEATS):
        dirs = rng.standard_normal((a.shape[1], DIRS_PER_REPEAT)).astype(np.float32)
        dirs /= np.sqrt((dirs * dirs).sum(axis=0, keepdims=True))
        proj_a = np.sort(dirs.T @ a.T, axis=1)  # (direction, neighbourhood): contiguous rows sort fast
        proj_b = np.sort(dirs.T @ b.T, axis=1)
        results.append(float(np.abs(proj_a - proj_b).mean()))
    return float(np.mean(results))


def _check(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[1] != images.shape[2]:
        raise InputError(f"SWD {name}: need square (N, H, W, C) images, got shape {images.shape}")
    if images.shape[1] < MIN_RESOLUTION or len(images) < 2:
        raise InputError(f"SWD {name}: need >= 2 images of >= {MIN_RESOLUTION} px, got {images.shape}")
    return images


def swd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, float]:
    """SWD x 1e3 between two equal-size image sets, per pyramid level ("swd_<res>") and mean ("swd")."""
    a, b = _check(a, "first set"), _check(b, "second set")
    if a.shape != b.shape:
        raise InputError(f"SWD needs two sets of the same shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    out = {}
    half, count = NHOOD // 2, len(a) * NHOODS_PER_IMAGE
    for level_a, level_b in zip(laplacian_pyramid(a), laplacian_pyramid(b)):
        side = level_a.shape[1]
        # the same neighbourhood positions in both sets (common random numbers): identical sets
        # score exactly 0 and the sampling noise of the positions cancels out of comparisons
        ys, xs = rng.integers(half, side - half, size=(2, count))
        desc_a, desc_b = descriptors(level_a, ys, xs), descriptors(level_b, ys, xs)
        out[f"swd_{level_a.shape[1]}"] = sliced_wasserstein(desc_a, desc_b, rng) * 1e3
    out["swd"] = float(np.mean(list(out.values())))
    return out
