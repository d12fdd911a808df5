"""The whole LFW, as a user gets it: download the published tgz from a (loopback) web server,
then crop the largest face of every photo. Slow (a few minutes on 2 cores)."""
from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import shared


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_lfw_tgz_over_http_to_12900_crops_per_size(cli, facegan_home):
    tgz = shared("archives", "lfw-deepfunneled.tgz")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tgz.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tgz.name}"
        got = cli("acquire", "--url", url, "--name", "lfw", timeout=1800)
        assert got.returncode == 0, got.stderr[-2000:]
    finally:
        server.shutdown()
    cropped = cli("crop", "--largest-only", timeout=3600)
    assert cropped.returncode == 0, cropped.stderr[-2000:]
    for size in (48, 64, 128):
        folder = facegan_home / "datasets" / "lfw" / str(size)
        manifest = pd.read_parquet(folder / "manifest.parquet")
        faces = np.load(folder / "faces.npy", mmap_mode="r")
        assert len(manifest) >= 12_900, len(manifest)  # measured: 13,016 of 13,233 photos
        assert faces.shape == (len(manifest), size, size, 3)
        pngs = sorted(p.name for p in folder.glob("[0-9]*.png"))
        assert pngs == list(manifest["file"])
        for i in np.random.default_rng(size).choice(len(manifest), 20, replace=False):
            with Image.open(folder / manifest["file"][i]) as im:
                assert im.mode == "RGB" and im.size == (size, size)
                assert np.array_equal(np.asarray(im), faces[i])
        # identity = LFW folder name, e.g. .../George_W_Bush/George_W_Bush_0001.jpg
        assert manifest["identity"].nunique() > 5000
        assert (manifest["identity"] == manifest["source"].str.split("/").str[-2]).all()
        assert (manifest["identity"] == "George_W_Bush").sum() > 400  # 530 photos
