"""Local folder import (`facegan acquire --path`): decode-validated, deduped, in place, resumable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import facegan_result, shared
from PIL import Image

from facegan.config.errors import InputError
from facegan.tasks.acquisition import local


def _photo_folder(tmp_path: Path) -> tuple[Path, dict]:
    """A folder of real photos: two identities in subfolders, a top-level photo, a PNG with a
    .jpg name, an exact duplicate, a text file, a truncated JPEG and an HTML page named .jpg."""
    src = shared("photos", "face_recognition")
    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:4]
    root = tmp_path / "people"
    (root / "Alice").mkdir(parents=True)
    (root / "Bob").mkdir()
    shutil.copy(photos[0], root / "Alice" / "Alice_0001.jpg")
    shutil.copy(photos[1], root / "Alice" / "Alice_0002.jpg")
    shutil.copy(photos[2], root / "Bob" / "Bob_0001.jpg")
    shutil.copy(photos[3], root / "group.jpg")
    shutil.copy(shared("photos", "retinaface", "old_img2.jpg"), root / "png_named_jpg.jpg")
    shutil.copy(photos[0], root / "Bob" / "copy_of_alice.jpg")
    (root / "notes.txt").write_text("not an image")
    data = photos[2].read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "page.jpg").write_text("<html><body>hello</body></html>")
    return root, {"ok": 5, "duplicate": 1, "failed": 3}


@pytest.mark.no_prefect
def test_import_folder_validates_by_decoding(tmp_path, facegan_home):
    root, expected = _photo_folder(tmp_path)
    result = local.import_folder(root, "people", workers=2, shard_size=3, progress=False, identity="folder")
    df = pd.read_parquet(result.manifest)
    assert Path(result.raw_dir) == facegan_home / "raw" / "people"
    assert df["status"].value_counts().to_dict() == expected
    by_name = {Path(p).name: r for p, r in zip(df["path"], df.to_dict("records"))}
    # in place: absolute paths to the original files
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])
    assert not list((facegan_home / "raw" / "people").rglob("*.jpg"))
    assert by_name["Alice_0002.jpg"]["identity"] == "Alice"
    assert by_name["Bob_0001.jpg"]["identity"] == "Bob"
    assert pd.isna(by_name["group.jpg"]["identity"])
    assert by_name["png_named_jpg.jpg"]["status"] == "ok"
    assert by_name["copy_of_alice.jpg"]["status"] == "duplicate"
    assert "Alice_0001.jpg" in by_name["copy_of_alice.jpg"]["reason"]
    assert by_name["truncated.jpg"]["reason"].startswith("truncated image")
    assert by_name["notes.txt"]["reason"].startswith("not an image")
    assert by_name["page.jpg"]["reason"].startswith("not an image")
    for name in ("Alice_0001.jpg", "group.jpg"):
        with Image.open(root.rglob(name).__next__()) as im:
            assert (by_name[name]["width"], by_name[name]["height"]) == im.size
        assert by_name[name]["bytes"] == os.path.getsize(by_name[name]["path"])
    assert result.stats["failed_not_an_image"] == 2 and result.stats["failed_truncated_image"] == 1


@pytest.mark.no_prefect
def test_rerun_reuses_unchanged_files(tmp_path):
    root, _ = _photo_folder(tmp_path)
    first = local.import_folder(root, "people", workers=1, progress=False)
    assert first.reused == 0
    again = local.import_folder(root, "people", workers=1, progress=False)
    assert again.reused == 9
    # a changed file is checked again: the truncated JPEG repaired with a full photo
    shutil.copy(shared("photos", "skimage", "astronaut.png"), root / "truncated.jpg")
    third = local.import_folder(root, "people", workers=1, progress=False)
    assert third.reused == 8
    df = pd.read_parquet(third.manifest).set_index("path")
    assert df.loc[str(root / "truncated.jpg"), "status"] == "ok"
    assert third.stats["ok"] == first.stats["ok"] + 1


def test_flow_logs_mlflow_run_and_default_name(tmp_path):
    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire
    from facegan.tasks.common import tracking

    root, expected = _photo_folder(tmp_path)
    result = acquire(AcquireConfig(path=root))
    assert result.name == "people" and result.ok == expected["ok"]
    run = tracking.get_run(result.run_id)
    assert run.data.tags["facegan.stage"] == "acquire"
    assert run.data.metrics["duplicates"] == 1 and run.data.metrics["failed"] == 3
    assert run.data.metrics["images_per_s"] > 0
    assert run.data.params["path"] == str(root)
    assert "manifest/manifest.parquet" in tracking.list_artifacts(result.run_id, "manifest")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["acquire-stats"])))
    assert any(a.type == "table" and "duplicates" in str(a.data) for a in artifacts)


def test_cli_bad_folders_one_line_and_existing_set_untouched(tmp_path, capfd, facegan_home):
    root, _ = _photo_folder(tmp_path)
    local.import_folder(root, "keep", workers=1, progress=False)
    manifest = facegan_home / "raw" / "keep" / "manifest.parquet"
    before = manifest.read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("<html>not a photo</html>")
    (junk / "b.txt").write_text("text")
    with pytest.raises(InputError, match="already holds images from"):
        local.import_folder(shared("photos", "skimage"), "keep", progress=False)
    cases = {tmp_path / "missing": "folder not found", empty: "folder is empty", junk: "no decodable image"}
    for folder, message in cases.items():
        # in-process (test_first_day runs acquire's own process)
        code, _, err = facegan_result(
            capfd, "acquire", "--path", folder, "--name", "keep" if folder != junk else "junk"
        )
        errors = [line for line in err.splitlines() if "error" in line.lower()]
        assert code == 2
        assert len(errors) == 1 and errors[0].startswith("facegan: error: "), err
        assert message in errors[0] and "Traceback" not in err
    assert manifest.read_bytes() == before
    # the same folder re-imported after its photos were deleted: the set is left as it was
    for photo in [p for p in root.rglob("*") if p.is_file() and p.name != "notes.txt"]:
        photo.unlink()
    with pytest.raises(InputError, match="no decodable image"):
        local.import_folder(root, "keep", progress=False)
    assert manifest.read_bytes() == before


@pytest.mark.no_prefect
def test_default_name_is_sanitised():
    assert local.default_name("lfw deepfunneled (copy)") == "lfw-deepfunneled-copy"
    assert local.default_name("...") == "images"


@pytest.mark.no_prefect
def test_hidden_folders_and_the_data_home_are_skipped(tmp_path, monkeypatch):
    root, _ = _photo_folder(tmp_path)
    (root / ".thumbnails").mkdir()
    shutil.copy(shared("photos", "skimage", "camera.png"), root / ".thumbnails" / "t.png")
    monkeypatch.setenv("FACEGAN_HOME", str(root / "facegan-data"))
    result = local.import_folder(root, "people", workers=1, progress=False)
    paths = pd.read_parquet(result.manifest)["path"]
    assert len(paths) == 9 and not any(".thumbnails" in p or "facegan-data" in p for p in paths)
    again = local.import_folder(root, "people", workers=1, progress=False)  # its own manifest is not imported
    assert again.stats["files"] == 9
