"""Crop stage on real photos: geometry, datasets, detector quality, bad input, kill + resume."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.cropping.geometry import cut_square, square_box


def test_lfw_sample_dataset_is_consistent(lfw_crops):
    for size in (48, 64, 128):
        folder = lfw_crops / "datasets" / "lfw-sample" / str(size)
        manifest = pd.read_parquet(folder / "manifest.parquet")
        faces = np.load(folder / "faces.npy")
        assert faces.dtype == np.uint8 and faces.shape == (len(manifest), size, size, 3)
        assert len(manifest) >= 290  # 300 photos, largest face only: Haar finds ~99% of LFW
        pngs = sorted(p.name for p in folder.glob("[0-9]*.png"))
        assert pngs == list(manifest["file"])
        for i in (0, len(manifest) // 2, len(manifest) - 1):
            with Image.open(folder / manifest["file"][i]) as im:
                assert im.mode == "RGB" and im.size == (size, size)
                assert np.array_equal(np.asarray(im), faces[i])
        # identities come from the LFW folder names
        assert manifest["identity"].notna().all()
        assert all(p.split("/")[-2] == ident for p, ident in zip(manifest["source"], manifest["identity"]))
        assert not list(folder.glob(".*.part"))
