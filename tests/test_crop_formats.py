"""Files a collection may hold: one real portrait in every image format (each gives its face),
and bad input (non-images, a 1x1 image, a PNG bomb, a truncated JPEG, text named .jpg): each
counted with its reason, one error line when nothing is usable, existing datasets untouched."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from conftest import facegan_result, file_digests, shared

from facegan.testing import lfw_photos


def _portrait() -> np.ndarray:
    """A real portrait (RGB): skimage's astronaut."""
    from PIL import Image

    with Image.open(shared("photos", "skimage", "astronaut.png")) as im:
        return np.asarray(im.convert("RGB"))


def test_formats_pgm_ppm_tiff_webp_bmp_png16_grey_jpeg_heic_gif(facegan_home, tmp_path):
    """One real portrait in every format a collection may come in: each gives its face as an RGB
    crop; unknown formats are counted at import, never fatal."""
    from PIL import Image

    from facegan.config.acquire import AcquireConfig
    from facegan.config.crop import CropConfig
    from facegan.flows.acquire import acquire
    from facegan.flows.crop import crop
    from facegan.tasks.cropping import formats

    rgb = _portrait()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    src = tmp_path / "formats"
    src.mkdir()
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(src / "grey.pgm"), grey)
    cv2.imwrite(str(src / "colour.ppm"), bgr)
    cv2.imwrite(str(src / "scan.tif"), bgr)
    cv2.imwrite(str(src / "web.webp"), bgr, [cv2.IMWRITE_WEBP_QUALITY, 90])
    cv2.imwrite(str(src / "old.bmp"), bgr)
    cv2.imwrite(str(src / "deep16.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(src / "grey.jpg"), grey, [cv2.IMWRITE_JPEG_QUALITY, 95])
    expected = {"grey.pgm", "colour.ppm", "scan.tif", "web.webp", "old.bmp", "deep16.png", "grey.jpg", "anim.gif"}
    noise = np.random.default_rng(0).integers(0, 255, rgb.shape, dtype=np.uint8)
    frames = [Image.fromarray(rgb), Image.fromarray(noise), Image.fromarray(noise[::-1])]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    if formats.register():
        Image.fromarray(rgb).save(src / "phone.heic", quality=90)
        expected.add("phone.heic")
    (src / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>')
    (src / "layers.xcf").write_bytes(b"gimp xcf v011" + bytes(range(256)) * 20)

    imported = acquire(AcquireConfig(path=src, name="formats"))
    assert imported.ok == len(expected) and imported.failed == 2
    result = crop(CropConfig(raw="formats", sizes=[64], largest_only=True, dedupe=False))
    assert result.stats["images_read"] == len(expected) and result.stats["images_no_face"] == 0
    assert result.stats["files_skipped"] == 2 and result.stats["skipped_not_an_image"] == 2
    folder = facegan_home / "datasets" / "formats" / "64"
    manifest = pd.read_parquet(folder / "manifest.parquet")
    faces = np.load(folder / "faces.npy")
    assert set(manifest["source"].str.split("/").str[-1]) == expected
    assert faces.shape == (len(expected), 64, 64, 3)
    reference = faces[list(manifest["source"].str.endswith("old.bmp")).index(True)].astype(int)
    for name, face in zip(manifest["source"].str.split("/").str[-1], faces.astype(int)):
        if name.startswith("grey"):
            assert (face[..., 0] == face[..., 1]).all() and (face[..., 1] == face[..., 2]).all(), name
            continue
        assert np.abs(face - reference).mean() < 25, name  # the same face (not the GIF's noise frames)
    rejected = pd.read_parquet(folder / "rejected.parquet")
    assert sorted(rejected["source"].str.split("/").str[-1]) == ["drawing.svg", "layers.xcf"]
    assert set(rejected["stage"]) == {"import"} and rejected["reason"].str.startswith("not an image").all()


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid 1-bit greyscale PNG of side×side black pixels (~50 KB on disk; Pillow would decode
    it to 400 MB, OpenCV to 1.2 GB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row, parts = zlib.compressobj(1), b"\0" * (1 + (side + 7) // 8), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    )


def test_bad_input_counted_with_reasons_one_line_when_nothing_usable(facegan_home, tmp_path, cli, capfd):
    """A folder of only non-images, a 1×1 image, a 20000×20000 PNG, a truncated JPEG among good
    photos and a text file named .jpg: each counted with its reason; one error line and exit 2 only
    when nothing at all is usable; existing datasets untouched."""

    from facegan.tasks.cropping.detect import read_image

    good = [(p, s, img) for p, s, img in lfw_photos(shared("archives", "lfw-deepfunneled.tgz"), 6, skip=2000)]
    mixed = tmp_path / "mixed"
    for person, stem, img in good:
        (mixed / person).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mixed / person / f"{stem}.jpg"), img)
    cv2.imwrite(str(mixed / "tiny.png"), np.full((1, 1, 3), 200, np.uint8))
    _png_bomb(mixed / "bomb.png")
    data = cv2.imencode(".jpg", good[0][2])[1].tobytes()
    (mixed / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (mixed / "text.jpg").write_text("this is not a photo\n")

    # the crop reader refuses the bomb from its header, before any decoder allocates it
    image, reason = read_image(mixed / "bomb.png")
    assert image is None and reason.startswith("too many pixels")

    # the crop that reads the bad files runs in a real process, as a user runs it; the other
    # commands run in-process through the same CLI entry point
    assert facegan_result(capfd, "acquire", "--path", mixed, "--name", "mixed")[0] == 0
    proc = cli("crop", "--raw", "mixed", "--sizes", "64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "images read: 7 of 7" in out and "3 files skipped at import" in out, out[-3000:]
    assert "images without a face: 1 (1 too small)" in out
    folder = facegan_home / "datasets" / "mixed" / "64"
    assert len(pd.read_parquet(folder / "manifest.parquet")["source"].unique()) == 6
    rejected = pd.read_parquet(folder / "rejected.parquet")
    why = dict(zip(rejected["source"].str.split("/").str[-1], rejected["reason"]))
    assert why["tiny.png"] == "too small" and why["bomb.png"].startswith("too many pixels")
    assert why["truncated.jpg"].startswith("truncated image") and why["text.jpg"].startswith("not an image")
    assert (folder / "no_face_sheet.png").is_file()

    before = file_digests(facegan_home / "datasets")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not a photo")
    (junk / "notes.txt").write_text("hello")
    code, _, err = facegan_result(capfd, "acquire", "--path", junk, "--name", "junk")
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]  # (the rest: progress bars)
    assert code == 2 and len(lines) == 1 and "no decodable image" in lines[0], err
    assert "2 files: 2 not an image" in lines[0]
    unusable = tmp_path / "unusable"
    unusable.mkdir()
    for name in ("tiny.png", "bomb.png", "text.jpg", "truncated.jpg"):
        (unusable / name).write_bytes((mixed / name).read_bytes())
    assert facegan_result(capfd, "acquire", "--path", unusable, "--name", "unusable")[0] == 0
    code, _, err = facegan_result(capfd, "crop", "--raw", "unusable", "--name", "mixed", "--sizes", "64")
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("facegan: error: no faces found in 1 images") and "3 files skipped at import" in lines[0]
    assert "Traceback" not in err
    assert file_digests(facegan_home / "datasets") == before
    assert not (facegan_home / "datasets" / "mixed" / ".work").exists()
