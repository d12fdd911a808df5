"""The Streamlit generator page, headless (streamlit.testing AppTest), on a tiny generator
trained on real LFW crops and registered in the session's MLflow store."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import REPO, dataset_path
from PIL import Image

PAGE = str(REPO / "flows" / "app_page.py")


@pytest.fixture
def trained_run(lfw_crops):
    """A registered 2-step DCGAN (48 px) trained on the session's real LFW crops."""
    from facegan.config.train import TrainConfig
    from facegan.flows.train import train

    return train(
        TrainConfig(
            dataset=dataset_path(lfw_crops, 48),
            size=48,
            steps=2,
            batch_size=8,
            features=8,
            sample_every=1,
            name="app-dcgan-48",
        )
    )


def test_app_generates_and_downloads_faces(trained_run):
    from streamlit.testing.v1 import AppTest

    from facegan.tasks.training.trained_generators import load_generator, sample_images

    at = AppTest.from_file(PAGE, default_timeout=180).run()
    assert not at.exception
    (label,) = [o for o in at.selectbox[0].options if trained_run[:8] in o]
    assert label.startswith("facegan-dcgan-48 v")
    at.selectbox[0].select(label)
    at.number_input[0].set_value(5)
    at.radio[0].set_value(10)
    at.button[0].click().run()
    assert not at.exception
    assert "10 faces from models:/facegan-dcgan-48/" in at.caption[0].value
    (download,) = at.get("download_button")
    assert download.proto.label == "Download PNGs (zip)"

    # the page's images are the generator's samples for that seed
    G, meta = load_generator(trained_run)
    expected = sample_images(G, meta, 10, seed=5)
    faces = at.session_state["faces"][2]
    assert faces.shape == (10, 48, 48, 3) and np.array_equal(faces, expected)
    from facegan.flows.app_page import zip_bytes  # noqa: E402  (importing runs the page once, harmless)

    with zipfile.ZipFile(io.BytesIO(zip_bytes(faces, "x"))) as archive:
        names = archive.namelist()
        first = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))))
    assert len(names) == 10 and np.array_equal(first, expected[0])

    at.radio[0].set_value(1)
    at.button[0].click().run()
    assert at.session_state["faces"][2].shape == (1, 48, 48, 3)
    assert at.get("download_button")[0].proto.label == "Download PNG"
