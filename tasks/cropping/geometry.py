"""Crop geometry: grow a detected face box by a relative margin, make it square, cut it out of
the image (shifted inside the image when it fits, padded with black when it cannot), resize."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SquareBox:
    x0: int
    y0: int
    side: int
    padded: bool


def square_box(x: int, y: int, w: int, h: int, img_w: int, img_h: int, margin: float) -> SquareBox:
    """The square around a face box grown by `margin` of its size on every side.

    The square keeps the face centred; if it crosses the border but fits inside the image it is
    shifted inside, otherwise the crop is padded (never resized to a skewed aspect ratio)."""
    cx, cy = x + w / 2.0, y + h / 2.0
    side = int(round(max(w, h) * (1.0 + 2.0 * margin)))
    side = max(side, 1)
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    padded = side > img_w or side > img_h
    if side <= img_w:
        x0 = min(max(x0, 0), img_w - side)
    if side <= img_h:
        y0 = min(max(y0, 0), img_h - side)
    return SquareBox(x0, y0, side, padded)


def cut_square(image: np.ndarray, box: SquareBox) -> np.ndarray:
    """Cut `box` out of `image` (H×W×C); parts outside the image are black."""
    h, w = image.shape[:2]
    x1, y1 = box.x0 + box.side, box.y0 + box.side
    if box.x0 >= 0 and box.y0 >= 0 and x1 <= w and y1 <= h:
        return image[box.y0 : y1, box.x0 : x1]
    out = np.zeros((box.side, box.side) + image.shape[2:], dtype=image.dtype)
    sx0, sy0 = max(box.x0, 0), max(box.y0, 0)
    sx1, sy1 = min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - box.y0 : sy1 - box.y0, sx0 - box.x0 : sx1 - box.x0] = image[sy0:sy1, sx0:sx1]
    return out


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
    """Resize a square crop to size×size: INTER_AREA when shrinking, bicubic when enlarging."""
    interp = cv2.INTER_AREA if crop.shape[0] >= size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)
