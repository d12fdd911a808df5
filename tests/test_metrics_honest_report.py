"""Report images and headings (issue 25, items 9 and 10): a sheet with no images says so instead
of an 8x8 black square, detected_vs_not keeps every tile at its size (one image is one tile, not
the whole panel), and each size's Table 1 names its size in the heading. Real LFW photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facegan.evaluation import figures, report
from tests.conftest import extract_lfw_subset

pytestmark = pytest.mark.no_prefect


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> np.ndarray:
    """Eight real LFW photos, centre 120 px resized to 64 px."""
    root = extract_lfw_subset(tmp_path_factory.mktemp("lfw"), 8)
    images = []
    for path in sorted(root.rglob("*.jpg")):
        photo = Image.open(path).convert("RGB").crop((65, 65, 185, 185)).resize((64, 64), Image.BICUBIC)
        images.append(np.asarray(photo))
    return np.stack(images)


def _has_text(image: np.ndarray) -> bool:
    grey = image.mean(axis=2)
    return (grey < 160).mean() > 0.002 and (grey > 250).mean() > 0.8  # dark strokes on white


def test_a_sheet_without_images_says_no_images(faces):
    empty = figures.sample_grid(faces[:0])
    assert empty.dtype == np.uint8 and empty.shape == (68, 8 * 66 + 2, 3)  # one tile high, a full row wide
    assert _has_text(empty)
    full = figures.sample_grid(faces[:0], full=True)
    assert full.shape == (4 * 66 + 2, 8 * 66 + 2, 3) and _has_text(full)
    grids = figures.detection_grids(faces, np.ones(len(faces), bool))
    assert _has_text(grids["not_detected"])
    assert grids["detected"].shape == (66 + 2, 8 * 66 + 2, 3)


def test_one_image_stays_one_tile(faces):
    one = figures.sample_grid(faces[:1])
    assert one.shape == (68, 68, 3) and np.array_equal(one[2:66, 2:66], faces[0])
    padded = figures.sample_grid(faces[:1], full=True)
    assert padded.shape == figures.sample_grid(np.repeat(faces, 4, axis=0), full=True).shape
    assert np.array_equal(padded[2:66, 2:66], faces[0])
    padded[2:66, 2:66] = 255
    assert (padded == 255).all()  # the rest of the panel is white, not a blown-up face


def test_detected_vs_not_figure_shows_tiles_at_one_scale(faces):
    import matplotlib.pyplot as plt

    detected = np.zeros(len(faces), bool)
    detected[3] = True  # one detected image, seven not
    figure = figures.detection_figure([("gan", faces, detected), ("nothing found", faces, np.zeros(len(faces), bool))])
    try:
        panels = [ax.get_images()[0].get_array() for ax in figure.axes]
        assert len(panels) == 4
        assert {p.shape for p in panels} == {(4 * 66 + 2, 8 * 66 + 2, 3)}  # same canvas: same tile scale
        one = np.asarray(panels[0])
        assert np.array_equal(one[2:66, 2:66], faces[3])
        assert _has_text(np.asarray(panels[2]))  # 'nothing found': no detected images
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert Image.open(buffer).size[0] > 500
    finally:
        plt.close(figure)


def test_each_size_has_its_own_table_1_heading():
    import pandas as pd

    from facegan.tasks.pipeline.stage import summary_text

    table = pd.DataFrame({"model": ["real control"], "N": [20]})
    markdown = {
        size: report.documents(table, "protocol", [], report.title("lfw", size))["table1.md"] for size in (48, 64)
    }
    assert markdown[48].startswith("# Table 1: face_recognition on generated faces — lfw, 48 px\n")
    assert markdown[64].startswith("# Table 1: face_recognition on generated faces — lfw, 64 px\n")
    html = report.documents(table, "protocol", [], report.title("lfw", 64))["table1.html"]
    assert "<h1>Table 1: face_recognition on generated faces — lfw, 64 px</h1>" in html
    printed = summary_text(
        {
            "reports": {s: {"markdown": m} for s, m in markdown.items()},
            "skipped": [],
            "train_run_ids": {},
            "pipeline_run_id": "x",
        }
    )
    headings = [line for line in printed.splitlines() if line.startswith("# Table 1")]
    assert [h.rsplit("— ", 1)[1] for h in headings] == ["lfw, 48 px", "lfw, 64 px"]
