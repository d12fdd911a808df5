"""Samples during training: the fixed-noise 8x8 grid, and the curve metrics (face detection rate,
Fréchet distance, precision and recall of generated faces against held-out real faces, from
evaluation when face_recognition is installed)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from facegan.tasks.common.atomic import atomic_path

log = logging.getLogger("facegan.train")


@torch.no_grad()
def save_grid(G: torch.nn.Module, noise: torch.Tensor, path: Path, run=None, nrow: int = 8) -> Path:
    """Render G(noise) as a grid PNG (atomically) and log it to the run's samples/ artifacts."""
    was_training = G.training
    G.eval()
    device = next(G.parameters()).device
    images = G(noise.to(device)).float().cpu()
    G.train(was_training)
    grid = make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))
    array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    if run is not None:
        run.log_artifact(path, "samples")
    return Path(path)


class CurveScorer:
    """Every `every` steps, the curve metrics of n generated faces against a fixed held-out real
    reference of the same dataset (evaluation's split and protocol, n real faces, encodings cached
    on disk): detection_rate and face_space_n (how many faces were detected) always; over the
    detected faces only, and only when at least facegan.evaluation.metrics.MIN_FACES of them (and of the
    real reference) are detected — as in the Table 1 report — frechet (face encodings),
    frechet_floor (the same distance between two disjoint real sets: the noise floor),
    frechet_ratio, precision and recall (k=3), and encoding_spread (mean pairwise encoding
    distance over the real reference's). A step below the minimum logs no face-space number
    rather than one computed on non-faces. Only the detection rate when the dataset is too small
    for a held-out split; off with a warning when face_recognition is unavailable."""

    K = 3

    def __init__(
        self,
        every: int,
        n: int,
        seed: int,
        dataset_path: Path | None = None,
        size: int | None = None,
        held_out: float = 0.2,
    ):
        self.every, self.n, self.seed, self.held_out = every, n, seed, held_out
        self.dataset_path, self.size = dataset_path, size
        self._space = None  # facegan.evaluation.metrics.FaceSpace of the real sets
        self._ready = False

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def prepare(self) -> bool:
        """Load face_recognition and score the real sets once; False when scoring is off."""
        if self._ready:
            return True
        try:
            from facegan.evaluation import embeddings  # noqa: F401  (face_recognition may call quit())
        except (Exception, SystemExit) as exc:
            log.warning("realism scoring off: face detection unavailable (%s)", exc)
            self.every = 0
            return False
        self._ready = True
        if self.dataset_path is not None:
            try:
                from facegan.evaluation import metrics
                from facegan.tasks.evaluating.scoring import load_real_sets, score_images

                real = load_real_sets(Path(self.dataset_path), self.n, self.size, self.held_out, self.seed)
                if real.info["n_real"] > self.K + 1:
                    control = score_images(real.control, label="real control")
                    reference = score_images(real.reference, label="real reference")
                    self._space = metrics.face_space(
                        control[1], control[0], reference[1], reference[0], min_faces=max(metrics.MIN_FACES, self.K + 1)
                    )
                    if self._space.reference is None:
                        log.warning("curve metrics: detection rate only (%s)", self._space.reference_note)
            except Exception as exc:  # too small for a held-out split: detection rate only
                log.warning("curve metrics: detection rate only (%s)", exc)
        return True

    def score_images(self, images: np.ndarray) -> dict[str, float]:
        """The curve metrics of one batch of generated uint8 (N, H, W, 3) images."""
        from facegan.evaluation import embeddings, metrics

        if self._space is None:
            from facegan.evaluation.detection import detect_faces

            detected = detect_faces(images)
            return {"detection_rate": float(detected.mean()), "face_space_n": int(detected.sum())}
        detected, encodings = embeddings.detect_and_encode(images)
        row = metrics.face_space_row(encodings, detected, self._space, self.K)
        scores = {"detection_rate": float(detected.mean()), "face_space_n": row["faces"]}
        if np.isfinite(row["frechet"]):
            floor = self._space.floor
            scores["frechet"] = row["frechet"]
            if np.isfinite(floor):
                scores.update(frechet_floor=floor, frechet_ratio=row["frechet"] / max(floor, 1e-12))
            scores.update(precision=row["precision"], recall=row["recall"], encoding_spread=row["spread"])
        return scores

    def score(self, G: torch.nn.Module, meta: dict) -> dict[str, float] | None:
        if not self.prepare():
            return None
        from facegan.tasks.training.trained_generators import sample_images

        state = torch.get_rng_state()
        images = sample_images(G, meta, self.n, seed=self.seed + 2)
        torch.set_rng_state(state)
        try:
            return self.score_images(images)
        except Exception as exc:
            log.warning("realism scoring off: %s", exc)
            self.every = 0
            return None
