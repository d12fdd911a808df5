"""Metrics in face_recognition's 128-d encoding space (no downloads needed).

- Fréchet distance between two sets of encodings (FID's formula on face encodings), reported
  next to its noise floor: the same distance between two disjoint real sets of the same size.
- k-NN precision / recall (Kynkäänniemi et al., 2019): precision = share of generated samples
  inside the real manifold (union of k-NN balls around real samples), recall = share of real
  samples inside the generated manifold.
- Memorisation: each image's distance to its nearest training face; an image is flagged when it
  is closer than the 1st percentile of the real held-out images' nearest-training distances
  (so real held-out faces are flagged ~1% by construction, verbatim training copies ~100%).
- Encoding spread: the mean pairwise distance of a set's encodings over the real reference's
  (diversity: ~1 for real faces, 0 for one image repeated, ~0.3 for a mode-collapsed generator).

Detected faces only (face_space / face_space_row): every one of these numbers is computed over the
images in which the detection protocol finds a face, generated and real sets alike, and only when
a set has at least MIN_FACES (20) of them; otherwise it is NaN (shown "—") with the reason. An
encoding of an image with no face in it is not a face: pure noise would otherwise get precision
~1.0 and memorised ~0.5, because noise encodings crowd into one small region of the space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from facegan.config.errors import InputError

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
        x = a[i : i + block]
        d2 = (x * x).sum(1)[:, None] + bb[None, :] - 2.0 * x @ b.T
        out[i : i + block] = np.sqrt(np.maximum(d2, 0.0))
    return out


def nearest_distances(queries: np.ndarray, reference: np.ndarray, block: int = 1024) -> np.ndarray:
    """For each query, the Euclidean distance to its nearest reference vector (float32, N)."""
    queries = _as_features(queries, "queries")
    reference = _as_features(reference, "reference")
    out = np.empty(len(queries), np.float32)
    for i in range(0, len(queries), block):
        out[i : i + block] = _pairwise(queries[i : i + block], reference).min(1)
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


# --- face-space metrics over detected faces only -------------------------------------------------

# Fewest detected faces a face-space number is computed on (else "—" and why): below ~20 the
# k=3 manifolds cover a few points, one face moves precision/recall by more than 0.05, and the
# Fréchet distance of 128-d encodings is dominated by its small-sample bias.
MIN_FACES = 20


def mean_pairwise_distance(x: np.ndarray, block: int = 1024) -> float:
    """Mean Euclidean distance over all pairs i != j of a set of vectors (float64, in blocks)."""
    x = _as_features(x, "encodings")
    sq = (x * x).sum(1)
    total = 0.0
    for i in range(0, len(x), block):
        part = x[i : i + block]
        d = np.sqrt(np.maximum(sq[i : i + block, None] + sq[None, :] - 2.0 * part @ x.T, 0.0))
        d[np.arange(len(part)), np.arange(i, i + len(part))] = 0.0  # i == j: not a pair
        total += float(d.sum())
    return total / (len(x) * (len(x) - 1))


def encoding_spread(encodings: np.ndarray, reference: np.ndarray) -> float:
    """Diversity: the mean pairwise distance of `encodings` over that of the real `reference`
    (≈1 for real faces, ≈0 for one face repeated, ~0.3 for a mode-collapsed generator)."""
    return mean_pairwise_distance(encodings) / max(mean_pairwise_distance(reference), 1e-12)


def _too_few(what: str, faces: int, n: int, min_faces: int) -> str:
    return f"{what}{faces} of {n} faces detected (fewer than {min_faces})"


@dataclass
class FaceSpace:
    """What every row's face-space numbers are measured against, from detected faces only:
    the real reference set's encodings (Fréchet, precision/recall, spread), the training faces'
    (nearest distance, memorised), the memorisation threshold and the Fréchet noise floor. A part
    resting on fewer than min_faces detected faces is None / NaN and its note says why."""

    reference: np.ndarray | None
    training: np.ndarray | None
    threshold: float
    floor: float
    min_faces: int
    reference_note: str = ""  # why no row gets Fréchet / precision / recall / spread
    control_note: str = ""  # why there is no noise floor (nor memorisation threshold)
    memo_note: str = ""  # why no row gets memorised / nearest distance
    counts: dict = field(default_factory=dict)  # detected faces per real set


def face_space(
    control: np.ndarray,
    control_detected: np.ndarray,
    reference: np.ndarray,
    reference_detected: np.ndarray,
    training: np.ndarray | None = None,
    training_detected: np.ndarray | None = None,
    min_faces: int = MIN_FACES,
) -> FaceSpace:
    """The real side of the face-space metrics (see FaceSpace), keeping detected faces only.

    control / reference / training: float (N, 128) encodings with their per-image detected flags."""
    if min_faces < 2:
        raise InputError(f"min_faces must be at least 2, got {min_faces}")
    ctrl = np.asarray(control)[np.asarray(control_detected, bool)]
    ref = np.asarray(reference)[np.asarray(reference_detected, bool)]
    counts = {"control": len(ctrl), "reference": len(ref)}
    ref_ok, ctrl_ok = len(ref) >= min_faces, len(ctrl) >= min_faces
    reference_note = "" if ref_ok else _too_few("real reference: ", len(ref), len(reference), min_faces)
    control_note = (
        ""
        if ctrl_ok
        else (
            _too_few("real control: ", len(ctrl), len(control), min_faces)
            + ": no noise floor, no memorisation threshold"
        )
    )
    floor = frechet_distance(ctrl, ref) if ref_ok and ctrl_ok else float("nan")
    train, threshold, memo_note = None, float("nan"), ""
    if training is not None:
        train = np.asarray(training)[np.asarray(training_detected, bool)]
        counts["training"] = len(train)
        if len(train) < min_faces:
            memo_note, train = _too_few("training faces: ", len(train), len(training), min_faces), None
        elif ctrl_ok:
            threshold = memorisation_threshold(nearest_distances(ctrl, train))
    return FaceSpace(
        ref if ref_ok else None, train, threshold, floor, min_faces, reference_note, control_note, memo_note, counts
    )


def face_space_row(encodings: np.ndarray, detected: np.ndarray, space: FaceSpace, k: int = 3) -> dict:
    """One set's face-space numbers over its detected faces only: faces (how many they rest on),
    frechet, precision, recall, spread, nearest_mean, memorised (NaN where a set has fewer than
    space.min_faces detected faces) and note (why a number is missing; '' when none is)."""
    detected = np.asarray(detected, bool)
    faces = np.asarray(encodings)[detected]
    nan = float("nan")
    row = {
        "faces": int(len(faces)),
        "frechet": nan,
        "precision": nan,
        "recall": nan,
        "spread": nan,
        "nearest_mean": nan,
        "memorised": nan,
        "note": "",
    }
    if len(faces) < space.min_faces:
        row["note"] = _too_few("", len(faces), len(detected), space.min_faces)
        return row
    if k < 1 or k >= space.min_faces:
        raise InputError(f"k must be between 1 and {space.min_faces - 1}, got {k}")
    notes = [n for n in (space.reference_note, space.control_note, space.memo_note) if n]
    if space.reference is not None:
        row["frechet"] = frechet_distance(faces, space.reference)
        row["precision"], row["recall"] = precision_recall(space.reference, faces, k)
        row["spread"] = encoding_spread(faces, space.reference)
    if space.training is not None:
        nearest = nearest_distances(faces, space.training)
        row["nearest_mean"] = float(nearest.mean())
        if np.isfinite(space.threshold):
            row["memorised"] = memorised_share(nearest, space.threshold)
    row["note"] = "; ".join(notes)
    return row
