"""The training faces' clusters, for a cluster-conditioned GAN (`--clusters K`).

k-means on what a frozen ImageNet network sees of each face: EfficientNet-lite0's stride-16 tap
(the projected discriminator's third, 112 channels), averaged to 4x4 positions, made blind to a
horizontal flip (training flips the faces at random, so a face and its mirror image must share a
cluster), centred, L2-normalised and reduced to its first 64 principal components. Pose, light, hair, skin and
background separate there; identity does, weakly (docs/results/projected.md: a face's nearest
neighbour in this tap is the same person 41-45% of the time). Never a face-identity network: the
face encodings are the yardstick.

A run computes its clusters once and keeps the labels in its folder (clusters.npy, written
atomically), so a resumed run conditions on the same labels whatever sklearn or the thread count
would give today.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facegan.tasks.common.atomic import write_npy

CLUSTERS_FILE = "clusters.npy"
TAP = 3  # EfficientNet-lite0's parts up to stride 16
COMPONENTS = 64


@torch.no_grad()
def imagenet_features(faces: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """uint8 faces (N, 3, H, W) -> (N, 112 * 8) float32: the frozen network's stride-16 maps of
    each face and of its mirror image, summed, averaged to 4x4 positions (the same length at
    every image size) and summed with their own mirror image, of which one half is kept. A face
    and its mirror image get the same features exactly."""
    from facegan.models.projected import IMAGENET_MEAN, IMAGENET_STD, feature_network

    parts = feature_network(pretrained=True)[:TAP].eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for chunk in faces.split(batch_size):
        x = (chunk.float() / 255 - mean) / std
        both = torch.cat([x, x.flip(-1)])
        for part in parts:
            both = part(both)
        maps = F.adaptive_avg_pool2d(both[: len(x)] + both[len(x) :], 4)
        out.append((maps + maps.flip(-1))[..., :2].flatten(1))
    return torch.cat(out).numpy()


def cluster_faces(faces: torch.Tensor, k: int, seed: int = 0) -> np.ndarray:
    """Each face's cluster (N,) int64, k-means with k clusters on its ImageNet features."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    if not 0 < k <= len(faces):
        raise ValueError(f"cannot make {k} clusters of {len(faces)} faces")  # the preflight says it to users
    features = imagenet_features(faces)
    features -= features.mean(0)
    features /= np.linalg.norm(features, axis=1, keepdims=True) + 1e-8
    reduced = PCA(min(COMPONENTS, *features.shape), random_state=seed).fit_transform(features)
    return KMeans(k, n_init=4, random_state=seed).fit_predict(reduced).astype(np.int64)


def run_clusters(run_dir: Path, faces: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """The run's cluster labels (N,): the ones in run_dir/clusters.npy when they fit these faces
    and k, else computed and saved there."""
    from facegan.tasks.training.callbacks import run_logger

    logger = run_logger()
    path = Path(run_dir) / CLUSTERS_FILE
    if path.is_file():
        try:
            labels = np.load(path)
            if labels.shape == (len(faces),) and 0 <= labels.min() and labels.max() < k:
                return torch.from_numpy(labels.astype(np.int64))
            logger.warning("%s does not fit %d faces in %d clusters: clustering again", path, len(faces), k)
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("cannot read %s (%s): clustering again", path, exc)
    logger.info(
        "clustering %d training faces into %d clusters (once per run: ImageNet features, k-means)", len(faces), k
    )
    started = time.monotonic()
    labels = cluster_faces(faces, k, seed)
    write_npy(labels, path)
    sizes = np.bincount(labels, minlength=k)
    logger.info(
        "%d clusters of %d to %d faces in %.0f s, kept in %s",
        k,
        sizes.min(),
        sizes.max(),
        time.monotonic() - started,
        path,
    )
    return torch.from_numpy(labels)


def class_shares(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Each cluster's share of the faces (k,), for the generator's draw."""
    return torch.bincount(labels, minlength=k).float() / len(labels)
