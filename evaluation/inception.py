"""Optional Inception FID: only with a local torchvision Inception-v3 weights file (never downloaded).

Features: torchvision.models.inception_v3 with its classifier removed (2048-d pool features),
images resized to 299 px bilinear and normalised with ImageNet statistics. The distance is the
same Fréchet formula as on face encodings. Note: torchvision's ImageNet weights differ from the
TF-Inception weights of the original FID, so values are comparable only with each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegan.config.errors import InputError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load_inception(weights: Path):
    import torch
    from torchvision.models import inception_v3

    try:
        state = torch.load(Path(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputError(f"cannot read Inception weights {weights}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{weights} is not a torchvision Inception-v3 state dict: {str(exc)[:200]}") from None
    model.fc = torch.nn.Identity()
    return model.eval()


def inception_features(model, images: np.ndarray, batch_size: int = 50) -> np.ndarray:
    """2048-d pool features (float64, N x 2048) of uint8 (N, H, W, 3) RGB images."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            x = x.permute(0, 3, 1, 2).float().div_(255)
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            out.append(model((x - mean) / std).double().numpy())
    return np.concatenate(out)
