"""Training data: a crop dataset's faces.npy loaded into memory once, served as batches.

No image decoding per step: the uint8 array is kept as one (N, 3, H, W) tensor; a batch is an
index into it, a random horizontal flip, and a scale to [-1, 1]. The order is a function of the
seed and the batch counter only (epoch e uses randperm seeded by (seed, e)), so a resumed run sees
exactly the batches the uninterrupted run would have seen — no sampler state to save.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from facegan.config.errors import InputError
from facegan.tasks.common.paths import FACES_ARRAY, data_home
from facegan.tasks.training.inputs import open_faces


def display_path(path: Path) -> str:
    """The dataset path relative to FACEGAN_HOME when inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(data_home()))
    except ValueError:
        return str(path.resolve())


def load_faces(path: Path, size: int) -> torch.Tensor:
    """The dataset as a uint8 (N, 3, size, size) tensor, checked against its declared size."""
    faces = open_faces(path, size, mmap=False)
    return torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()


def dataset_fingerprint(path: Path) -> str:
    """Which version of a crop dataset this is: sha256 of its faces.npy (the pixels training and
    evaluation read), 16 hex digits. A re-crop that changes any crop changes it."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(Path(path) / FACES_ARRAY, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {Path(path) / FACES_ARRAY}: {exc}") from None
    return digest.hexdigest()[:16]


def dataset_info(path: Path) -> dict:
    meta = path / "meta.json"
    try:
        return json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        return {}


class FaceBatches:
    """Batches of real faces in [-1, 1] (float32, on `device`), drop-last epochs; with `labels`
    (a cluster-conditioned GAN) each batch's labels too."""

    def __init__(
        self,
        faces: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        device="cpu",
        memory_format=torch.contiguous_format,
        rank: int = 0,
        world: int = 1,
        labels: torch.Tensor | None = None,
    ):
        if batch_size * world > len(faces):
            raise InputError(
                f"--batch-size {batch_size} x {world} processes is larger than the dataset ({len(faces)} crops)"
            )
        self.faces, self.batch_size, self.seed = faces, batch_size, seed
        self.device, self.memory_format = torch.device(device), memory_format
        self.rank, self.world = rank, world
        self.labels = labels  # (N,) cluster of each face, or None
        self.per_epoch = len(faces) // (batch_size * world)  # this rank's batches per epoch
        self._epoch, self._perm = -1, None

    def epoch_of(self, batch_index: int) -> int:
        return batch_index // self.per_epoch

    def indices(self, batch_index: int) -> torch.Tensor:
        """Which faces this rank's batch number `batch_index` (0-based, counted over all epochs)
        holds. With several ranks, every epoch's permutation is shared and rank r takes every
        world-th batch of it."""
        epoch, i = divmod(batch_index, self.per_epoch)
        i = i * self.world + self.rank
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(len(self.faces), generator=g)
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

    def labels_of(self, batch_index: int) -> torch.Tensor:
        """The cluster labels of batch `batch_index`'s faces (a cluster-conditioned GAN)."""
        if self.labels is None:
            raise ValueError("these batches have no labels")
        return self.labels[self.indices(batch_index)].to(self.device)

    def get(self, batch_index: int) -> torch.Tensor:
        """This rank's batch number `batch_index`, flipped at random (seeded by its number)."""
        idx = self.indices(batch_index)
        batch = self.faces[idx]
        flip = (
            torch.rand(
                len(idx),
                generator=torch.Generator().manual_seed(self.seed * 7_919 + batch_index * self.world + self.rank),
            )
            < 0.5
        )
        batch[flip] = batch[flip].flip(-1)
        batch = batch.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        return batch.contiguous(memory_format=self.memory_format)
