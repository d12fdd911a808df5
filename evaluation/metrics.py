"""Metrics in face_recognition's 128-d encoding space (no downloads needed).

- Fréchet distance between two sets of encodings (FID's formula on face encodings), reported
  next to its noise floor: the same distance between two disjoint real sets of the same size.
- k-NN precision / recall (Kynkäänniemi et al., 2019): precision = share of generated samples
  inside the real manifold (union of k-NN balls around real samples), recall = share of real
  samples inside the generated manifold.
- Memorisation: each image's distance to its nearest training face; an image is flagged when it
  is closer than the 1st percentile of the real held-out images' nearest-training distances
  (so real held-out faces are flagged ~1% by construction, verbatim training copies ~100%).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from config.errors import InputError

MEMO_PERCENTILE = 1.0


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"{name}: need an (N>=2, D) array of encodings, got shape {x.shape}")
    return x


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr((S_a S_b)^1/2) for PSD S_a, S_b: the eigenvalues of S_a S_b are those of the symmetric
    S_a^1/2 S_b S_a^1/2, so two symmetric eigendecompositions replace a general sqrtm (much
    faster and stable for the rank-deficient covariances of few samples in many dimensions)."""
    w, v = linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_a @ cov_b @ root_a
    eig = linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two sets of feature vectors."""
    a, b = _as_features(a, "a"), _as_features(b, "b")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    norm_a, norm_b = len(a) - 1, len(b) - 1
    trace_a, trace_b = (ca * ca).sum() / norm_a, (cb * cb).sum() / norm_b
    if min(len(a), len(b)) < a.shape[1]:
        # fewer samples than dimensions: Tr((S_a S_b)^1/2) is the nuclear norm of the small
        # cross-Gram matrix Ca Cb^T / sqrt(norm_a norm_b) (same nonzero spectrum, far cheaper)
        cross = linalg.svdvals(ca @ cb.T).sum() / np.sqrt(norm_a * norm_b)
    else:
        cross = _trace_sqrt_product(ca.T @ ca / norm_a, cb.T @ cb / norm_b)
    value = float(((mu_a - mu_b) ** 2).sum() + trace_a + trace_b - 2 * cross)
    return max(value, 0.0)


def _pairwise(a: np.ndarray, b: np.ndarray, block: int = 2048) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), float32, computed in blocks."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    bb = (b * b).sum(1)
    out = np.empty((len(a), len(b)), np.float32)
    for i in range(0, len(a), block):
        x = a[i:i + block]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        out[i:i + block] = np.sqrt(np.maximum(d2, 0.0))
    return out


def nearest_distances(queries: np.ndarray, reference: np.ndarray, block: int = 1024) -> np.ndarray:
    """For each query, the Euclidean distance to its nearest reference vector (float32, N)."""
    queries = _as_features(queries, "queries")
    reference = _as_features(reference, "reference")
    out = np.empty(len(queries), np.float32)
    for i in range(0, len(queries), block):
        out[i:i + block] = _pairwise(queries[i:i + block], reference).min(1)
    return out


def _knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN manifolds."""
    real, fake = _as_features(real, "real"), _as_features(fake, "fake")
    if k < 1 or k >= min(len(real), len(fake)):
        raise InputError(f"k must be between 1 and {min(len(real), len(fake)) - 1}, got {k}")
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    d = _pairwise(fake, real)  # (n_fake, n_real)
    precision = float((d <= real_radii[None, :]).any(1).mean())
    recall = float((d.T <= fake_radii[None, :]).any(1).mean())
    return precision, recall


def memorisation_threshold(real_nearest: np.ndarray, percentile: float = MEMO_PERCENTILE) -> float:
    """The `percentile`-th percentile of the real held-out images' nearest-training distances."""
    real_nearest = np.asarray(real_nearest, np.float64)
    if len(real_nearest) == 0:
        raise InputError("memorisation threshold needs real held-out distances")
    return float(np.percentile(real_nearest, percentile))


def memorised_share(nearest: np.ndarray, threshold: float) -> float:
    """Share of images closer to their nearest training face than the real-data threshold."""
    nearest = np.asarray(nearest)
    return float((nearest < threshold).mean()) if len(nearest) else float("nan")
