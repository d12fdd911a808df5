"""Samples during training: the fixed-noise 8x8 grid, and the realism score (face detection
rate of generated faces, from evaluation.detection when face_recognition is installed)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from tasks.atomic import atomic_path

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


class RealismScorer:
    """Every `every` steps: the share of `n` generated images in which face_recognition finds a
    face (evaluation.detection.detection_rate). Disabled with a warning when unavailable."""

    def __init__(self, every: int, n: int, seed: int):
        self.every, self.n, self.seed = every, n, seed
        self._fn = None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def _detector(self):
        if self._fn is None:
            try:
                from evaluation.detection import detection_rate
            except (Exception, SystemExit) as exc:  # face_recognition may call quit()
                log.warning("realism scoring off: face detection unavailable (%s)", exc)
                self.every = 0
                return None
            self._fn = detection_rate
        return self._fn

    def score(self, G: torch.nn.Module, meta: dict) -> float | None:
        detect = self._detector()
        if detect is None:
            return None
        from tasks.training.generator import sample_images

        state = torch.get_rng_state()
        images = sample_images(G, meta, self.n, seed=self.seed + 2)
        torch.set_rng_state(state)
        try:
            return float(detect(images))
        except Exception as exc:
            log.warning("realism scoring off: %s", exc)
            self.every = 0
            return None
