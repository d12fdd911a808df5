"""bench/gpu_runs.py, the path to a lent GPU box without a package index or tracking store: real
LFW crops packed as JPEGs and decoded back, a real (tiny) training through the training loop with
the local metrics sink, its checkpoints exported as curve grids and fp16 generator files, and the
bundles that carry them home, each file sent once."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.conftest import dataset_path

ROOT = Path(__file__).resolve().parents[1]


def gpu_runs(*args: str, cwd: Path) -> str:
    script = str(ROOT / "bench" / "gpu_runs.py")
    proc = subprocess.run([sys.executable, script, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_pack_train_export_bundle_round_trip(lfw_crops, tmp_path):
    from facegan.tasks.training.data import dataset_fingerprint
    from facegan.tasks.training.trained_generators import load_generator, sample_images

    source = Path(dataset_path(lfw_crops))
    packed = tmp_path / "faces.npz"
    gpu_runs("pack-faces", str(source), str(packed), cwd=tmp_path)

    out = tmp_path / "g"
    gpu_runs(
        "train", "--faces", str(packed), "--out", str(out), "--name", "tiny", "--kimg", "0.032",
        "--checkpoint-every", "2", "--set", "model=dcgan", "--set", "batch_size=8", "--set", "threads=1",
        "--set", "log_every=1", "--set", "features=8", cwd=tmp_path,
    )  # fmt: skip
    # the JPEG round trip: same shape, close pixels, the source's fingerprint remembered
    real = np.load(source / "faces.npy")
    decoded = np.load(out / "datasets" / "lfw-deepfunneled" / "64" / "faces.npy")
    assert decoded.shape == real.shape
    assert np.abs(decoded.astype(int) - real).mean() < 3
    assert str(np.load(packed)["source"]) == dataset_fingerprint(source)
    records = [json.loads(line) for line in (out / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "step" in r]
    assert max(steps) == 4  # 32 images at batch 8, logged by the loop to the local sink

    gpu_runs(
        "export",
        "--out",
        str(out),
        "--weights-at",
        "tiny=0.032",
        "--curve-at",
        "0.016,0.032",
        "--weights-window",
        "0.008",
        cwd=tmp_path,
    )
    export = out / "export"
    assert sorted(p.name for p in export.glob("*.webp")) == ["curve-tiny-000002.webp", "curve-tiny-000004.webp"]
    assert [p.name for p in export.glob("gen-*.pt")] == ["gen-tiny-000004.pt"]

    # the grid is what the exported generator draws from the curve scorer's noise (seed + 2)
    G, meta = load_generator(str(export / "gen-tiny-000004.pt"))
    assert meta["kimg"] == 0.032 and meta["ema"] and meta["source_fingerprint"] == dataset_fingerprint(source)
    assert all(v.dtype == torch.float32 for v in G.state_dict().values() if v.is_floating_point())
    grid = np.asarray(Image.open(export / "curve-tiny-000004.webp"))
    first = sample_images(G, meta, 2, seed=2)[0]
    assert grid.shape == (16 * 64, 16 * 64, 3)
    assert np.abs(grid[:64, :64].astype(int) - first).mean() < 2  # fp16 weights: nearly the same pixels

    print(gpu_runs("bundle", "--out", str(out), "--to", str(tmp_path / "OUT1"), cwd=tmp_path))
    names = [m.name for t in (tmp_path / "OUT1").glob("*.tar") for m in tarfile.open(t).getmembers()]
    assert sorted(names) == ["curve-tiny-000002.webp", "curve-tiny-000004.webp", "gen-tiny-000004.pt"]
    again = gpu_runs("bundle", "--out", str(out), "--to", str(tmp_path / "OUT2"), cwd=tmp_path)
    assert "bundled 0 files" in again and not list((tmp_path / "OUT2").glob("*-0.tar"))
