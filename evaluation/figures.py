"""The Table 1 report's pictures: a bar chart of the table, and grids of the samples a detector
found a face in and those it did not. Pure functions: arrays and tables in, images and matplotlib
figures out (tasks/evaluating/report.py logs them)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bar_chart(table: pd.DataFrame):
    """Detection rate (with the real control's as a line) and Fréchet distance (with its noise
    floor) per row, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = table["model"].tolist()
    colors = ["#888888" if i == len(labels) - 1 else "#3b75af" for i in range(len(labels))]
    ax1.bar(labels, table["detection rate"], color=colors)
    ax1.axhline(table["detection rate"].iloc[-1], color="k", ls="--", lw=1, label="real control")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("face detected (share)")
    ax1.set_title("face_recognition detection rate")
    for i, v in enumerate(table["detection rate"]):
        ax1.text(i, min(v + 0.02, 1.0), f"{v:.3f}", ha="center", fontsize=8)
    ax2.bar(labels, table["Fréchet distance (face enc.)"], color=colors)
    ax2.axhline(table["Fréchet noise floor"].iloc[0], color="k", ls="--", lw=1, label="noise floor")
    ax2.set_ylabel("Fréchet distance")
    ax2.set_title("Fréchet distance on face encodings")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


PAD = 2  # white pixels around and between tiles


def _tile_shape(images) -> tuple[int, int]:
    shape = np.shape(images)
    return (shape[1], shape[2]) if len(shape) == 4 and shape[1] and shape[2] else (64, 64)


def grid_shape(tile: tuple[int, int], n: int = 32, nrow: int = 8) -> tuple[int, int]:
    """(height, width) in pixels of a full grid of n tiles of `tile` px, nrow per row."""
    rows, cols = -(-n // nrow), min(nrow, n)
    return rows * (tile[0] + PAD) + PAD, cols * (tile[1] + PAD) + PAD


def text_tile(height: int, width: int, text: str = "no images") -> np.ndarray:
    """A white uint8 (height, width, 3) image with `text` in grey at its centre."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=max(10, min(height, width, 96) // 4))
    except (TypeError, OSError):  # a Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(
        ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, fill=(96, 96, 96), font=font
    )
    return np.asarray(canvas).copy()


def sample_grid(images: np.ndarray, n: int = 32, nrow: int = 8, full: bool = False) -> np.ndarray:
    """A uint8 grid (H, W, 3) of the first n images, tiles at their own size. No images: a white
    strip one tile high saying "no images". full=True: always the size of a full grid of n (the
    tiles top-left on white), so grids of 1 and of n images show their tiles at the same scale."""
    tile = _tile_shape(images)
    height, width = grid_shape(tile, n, nrow)
    if len(images) == 0:
        return text_tile(height if full else tile[0] + 2 * PAD, width)
    images = images[:n]
    # torchvision's make_grid returns a lone image as it is (no padding), which a figure then
    # stretched to a whole panel: the grid is laid out here, every tile with its padding
    cols = min(nrow, len(images))
    if not full:
        height, width = grid_shape(tile, len(images), cols)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, image in enumerate(images):
        top, left = PAD + (i // cols) * (tile[0] + PAD), PAD + (i % cols) * (tile[1] + PAD)
        canvas[top : top + tile[0], left : left + tile[1]] = image
    return canvas


def detection_grids(images: np.ndarray, detected: np.ndarray, n: int = 32, full: bool = False) -> dict[str, np.ndarray]:
    """{'detected': grid, 'not_detected': grid} of up to n samples each, in sample order."""
    return {
        "detected": sample_grid(images[detected], n, full=full),
        "not_detected": sample_grid(images[~detected], n, full=full),
    }


def detection_figure(rows: list[tuple[str, np.ndarray, np.ndarray]], n: int = 32):
    """One figure: for each (label, images, detected) a 'detected' and a 'not detected' grid,
    every panel the size of a full grid of n (sample_grid full=True): one image stays one tile,
    an empty side says "no images"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 2.9 * len(rows)), squeeze=False)
    for (label, images, detected), (left, right) in zip(rows, axes):
        grids = detection_grids(images, detected, n, full=True)
        for ax, key, title in ((left, "detected", "face detected"), (right, "not_detected", "no face detected")):
            ax.imshow(grids[key], interpolation="nearest")
            count = int(detected.sum()) if key == "detected" else int((~detected).sum())
            ax.set_title(f"{label}: {title} ({count}/{len(detected)})", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
