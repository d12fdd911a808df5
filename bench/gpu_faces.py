"""A crop dataset carried to a lent GPU box and back (bench/gpu_runs.py): faces.npy as JPEGs in
one .npz that fits the 64 MiB a call carries, and decoded again on the box."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def pack_faces(dataset: Path, out: Path, quality: int, subsampling: int) -> None:
    """A crop dataset's faces.npy as JPEGs in one .npz (bytes + offsets + the source fingerprint)."""
    from facegan.tasks.training.data import dataset_fingerprint

    faces = np.load(dataset / "faces.npy", mmap_mode="r")

    def encode(face: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(face)).save(buf, "JPEG", quality=quality, subsampling=subsampling)
        return buf.getvalue()

    with ThreadPoolExecutor() as pool:
        blobs = list(pool.map(encode, faces, chunksize=256))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, jpeg=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets, source=dataset_fingerprint(dataset))
    tmp.replace(out)
    print(f"{out}: {len(blobs)} faces {faces.shape[1]} px, {offsets[-1] / 2**20:.1f} MiB (JPEG q{quality})")


def unpack_faces(packed: Path, folder: Path) -> str:
    """The packed faces decoded into folder/faces.npy (once, whichever of several trainings started
    together gets there first); returns the source dataset's fingerprint."""
    import tempfile

    data = np.load(packed)
    if not (folder / "faces.npy").is_file():
        jpeg, off = data["jpeg"].tobytes(), data["offsets"]

        def decode(i: int) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(jpeg[off[i] : off[i + 1]])).convert("RGB"))

        with ThreadPoolExecutor() as pool:
            faces = np.stack(list(pool.map(decode, range(len(off) - 1))))
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as fh:
            np.save(fh, faces)
        Path(fh.name).replace(folder / "faces.npy")
    return str(data["source"])
