"""Bring your own face collection: tight face chips, greyscale PGM portraits in sN/ folders and
CelebA's aligned images, all built here from ../shared/data (nothing committed), cropped by the
real acquire and crop flows. The measured shares are printed (pytest -s) and asserted."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import dlib_face_boxes, facegan_result, file_digests, shared

N_CHIPS = 200
N_CELEBA = 200


def _lfw_photos(n: int, skip: int = 400):
    """(person, file stem, BGR image) of LFW photos after the first `skip` (other than the 300 of
    the lfw_crops fixture)."""
    with tarfile.open(shared("archives", "lfw-deepfunneled.tgz"), "r:gz") as tar:
        seen = 0
        for member in tar:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            seen += 1
            if seen <= skip:
                continue
            data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
            yield member.name.split("/")[-2], Path(member.name).stem, cv2.imdecode(data, cv2.IMREAD_COLOR)
            if seen >= skip + n:
                return


def tight_chips(n: int = N_CHIPS, side: int = 200, seed: int = 0) -> list[tuple[str, str, np.ndarray]]:
    """LFW faces cut to their Haar box or up to 8% of it tighter on every side (the face touches
    the borders), resized to side×side: the face chips an earlier detector leaves behind."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.detect import detect_faces

    rng = np.random.default_rng(seed)
    chips = []
    for person, stem, img in _lfw_photos(int(n * 1.1) + 5):
        boxes = detect_faces(img, CropConfig(largest_only=True))
        if not boxes:
            continue
        x, y, w, h = boxes[0]
        t = int(round(rng.uniform(0.0, 0.08) * w))
        chip = img[y + t : y + h - t, x + t : x + w - t]
        chips.append((person, stem, cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA)))
        if len(chips) == n:
            break
    assert len(chips) == n
    return chips


@pytest.fixture(scope="module")
def byo_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("byo")
    chips = tight_chips()
    persons: dict[str, int] = {}
    for person, stem, chip in chips:
        (root / "chips" / person).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "chips" / person / f"{stem}.jpg"), chip, [cv2.IMWRITE_JPEG_QUALITY, 95])
        # the same chips as a greyscale portrait set: att/sN/k.pgm, one folder per person
        folder = root / "pgm" / "att_faces" / f"s{persons.setdefault(person, len(persons) + 1)}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{len(list(folder.iterdir())) + 1}.pgm"), cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY))
    with zipfile.ZipFile(shared("archives", "celeba-10k-89x109.zip")) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[:N_CELEBA]
        (root / "celeba").mkdir()
        for name in names:
            (root / "celeba" / Path(name).name).write_bytes(zf.read(name))
    return {"chips": root / "chips", "pgm": root / "pgm", "celeba": root / "celeba"}


def _crop_share(name: str, facegan_home: Path, **options):
    """(share of the raw set's images giving a 64 px crop, the flow's CropResult, manifest) of one crop run."""
    from facegan.config.crop import CropConfig
    from facegan.flows.crop import crop

    tag = "-".join(f"{k}{v}" for k, v in options.items()).replace(".", "") or "default"
    result = crop(CropConfig(raw=name, name=f"{name}-{tag}", sizes=[64], largest_only=True, **options))
    manifest = pd.read_parquet(facegan_home / "datasets" / f"{name}-{tag}" / "64" / "manifest.parquet")
    return manifest["source"].nunique() / result.stats["images_in"], result, manifest


@pytest.mark.parametrize("kind,floor", [("chips", 0.90), ("pgm", 0.95)])
def test_tight_chips_survive_the_padded_search(byo_sets, facegan_home, kind, floor):
    """Measured (200 chips cut 0-8% inside the Haar box, ~200 px, --largest-only, 64 px): colour
    JPEG chips 67.0% without the padded search, 98.0% with it; the same as greyscale PGM 70.0% /
    98.0%; with the automatic aligned-set rule on top (one centred face each) 100% of both."""
    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire

    # sN/k.pgm is not LFW's <Name>/<Name>_0001.jpg, which acquire's automatic identity rule
    # requires: a person-per-folder research layout is stated with --identity folder
    acquire(AcquireConfig(path=byo_sets[kind], name=kind, identity="folder" if kind == "pgm" else "auto"))
    plain, plain_run, _ = _crop_share(kind, facegan_home, pad=0.0, aligned=False)
    padded, padded_run, manifest = _crop_share(kind, facegan_home, aligned=False)
    auto, auto_run, auto_manifest = _crop_share(kind, facegan_home)
    print(f"\n{kind}: plain Haar {plain:.3f}, + padded search {padded:.3f}, + aligned-set rule {auto:.3f}")
    assert plain_run.stats["images_haar_padded"] == 0 and plain < 0.8  # tight chips defeat plain Haar
    assert padded >= floor, padded
    assert padded_run.stats["images_haar_padded"] > 0.2 * N_CHIPS
    assert (
        padded_run.stats["images_haar"] + padded_run.stats["images_haar_padded"] + padded_run.stats["images_no_face"]
        == padded_run.stats["images_read"]
    )
    assert set(manifest["method"]) == {"haar", "haar-padded"}
    assert manifest.groupby("method")["source"].nunique().to_dict() == {
        "haar": padded_run.stats["images_haar"],
        "haar-padded": padded_run.stats["images_haar_padded"],
    }
    # the padded search's boxes reach past the chip's borders; the square stays a square
    pad_rows = manifest[manifest["method"] == "haar-padded"]
    assert (pad_rows["w"] == pad_rows["h"]).all() and (pad_rows["w"] > 0.9 * 200).mean() > 0.5
    assert auto >= padded and auto_run.stats["images_no_face"] == N_CHIPS - auto_manifest["source"].nunique()
    if kind == "pgm":  # identity = the sN folder of the nested att_faces/sN/k.pgm layout
        assert manifest["identity"].str.fullmatch(r"s\d+").all()
        assert (manifest["identity"] == manifest["source"].str.split("/").str[-2]).all()
        faces = np.load(facegan_home / "datasets" / f"{kind}-alignedFalse" / "64" / "faces.npy")
        assert faces.shape[1:] == (64, 64, 3)  # RGB out, grey in all three channels
        assert np.array_equal(faces[..., 0], faces[..., 1]) and np.array_equal(faces[..., 1], faces[..., 2])


def test_aligned_celeba_loses_no_image(byo_sets, facegan_home):
    """CelebA's aligned 89×109 images: --aligned crops every one (the centred square, no
    detection); automatically, the set is recognised as aligned and the images Haar misses are cut
    at the set's typical face box. Measured on 200 images: plain Haar 90.5%, + padded search 91.5%,
    automatic 100%, --aligned 100%."""
    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire
    from facegan.tasks.common import tracking

    acquire(AcquireConfig(path=byo_sets["celeba"], name="celeba"))
    plain, _, _ = _crop_share("celeba", facegan_home, pad=0.0, aligned=False)
    padded, _, _ = _crop_share("celeba", facegan_home, aligned=False)
    auto, auto_run, auto_manifest = _crop_share("celeba", facegan_home)
    forced, forced_run, manifest = _crop_share("celeba", facegan_home, aligned=True)
    print(
        f"\nceleba: plain Haar {plain:.3f}, + padded search {padded:.3f}, automatic {auto:.3f}, --aligned {forced:.3f}"
    )
    assert forced == 1.0 and len(manifest) == N_CELEBA
    assert set(manifest["method"]) == {"aligned-centre"}
    assert manifest[["crop_x0", "crop_y0", "crop_side"]].drop_duplicates().values.tolist() == [[0, 10, 89]]
    assert (
        forced_run.stats["images_aligned"] == N_CELEBA
        and forced_run.stats["images_haar"] == 0
        and forced_run.stats["images_no_face"] == 0
    )
    assert auto_run.stats["aligned_set"] == 1 and auto == 1.0
    filled = auto_manifest[auto_manifest["method"] == "aligned-box"]
    assert (
        len(filled)
        == auto_run.stats["images_aligned"]
        == N_CELEBA - auto_run.stats["images_haar"] - auto_run.stats["images_haar_padded"]
    )
    assert len(filled) > 0 and filled[["x", "y", "w", "h"]].drop_duplicates().shape[0] == 1
    metrics = tracking.get_run(auto_run.run_id).data.metrics
    assert metrics["images_aligned"] == len(filled) and metrics["aligned_set"] == 1


@pytest.mark.no_prefect
def test_padded_search_finds_no_faces_in_face_free_photos():
    """The padded search runs on every image where the normal one finds nothing, so it must not
    invent faces: 151 video frames and 300 flower photos at 128 and 64 px. Measured: video frames
    0 → 0, flowers 128 px 3 → 4, 64 px 1 → 1 images with a face."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.detect import find_faces, read_bgr

    frames = [read_bgr(p) for p in sorted(shared("negatives", "video_frames").glob("*.jpg"))]
    files = sorted(shared("negatives", "flowers").rglob("*.jpg"))
    picked = [files[i] for i in np.random.default_rng(0).choice(len(files), 300, replace=False)]
    flowers = [cv2.imread(str(p)) for p in picked]
    small = [cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in flowers]
    for name, images, most in [("video", frames, 0), ("flowers128", flowers, 4), ("flowers64", small, 3)]:
        found = [m for _, m in (find_faces(im, CropConfig(largest_only=True)) for im in images)]
        plain, padded = sum(m == "haar" for m in found), sum(m is not None for m in found)
        print(f"\n{name}: {len(images)} images, plain Haar {plain}, with the padded search {padded}")
        assert sum(m is not None for m in found) <= most, name


@pytest.mark.no_prefect
def test_hand_labelled_boxes_with_the_padded_search():
    """dlib's 43 hand-labelled faces through find_faces (the crop stage's detector, padded search
    included): recall >= 0.78 at precision >= 0.95 (measured 0.814 / 1.0, as without it: every
    one of these photos has a face the normal search finds)."""
    from facegan.config.crop import CropConfig
    from facegan.tasks.cropping.detect import find_faces, read_bgr

    root, truth = dlib_face_boxes()

    def iou(a, b):
        ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)

    hits = false_pos = 0
    for file, boxes in truth.items():
        matched: set[int] = set()
        found, _ = find_faces(read_bgr(root / file), CropConfig())
        for det in found:
            best = max(range(len(boxes)), key=lambda i: iou(det, boxes[i]))
            if iou(det, boxes[best]) >= 0.3 and best not in matched:
                matched.add(best)
                hits += 1
            else:
                false_pos += 1
    recall, precision = hits / 43, hits / max(hits + false_pos, 1)
    print(f"\ndlib boxes: recall {recall:.3f}, precision {precision:.3f}")
    assert recall >= 0.78 and precision >= 0.95, (recall, precision)


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

    good = [(p, s, img) for p, s, img in _lfw_photos(6, skip=2000)]
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
