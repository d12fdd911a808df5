"""The installation and the shared foundation: pinned dependencies import, the CLI, the config
reference, the tracking store and atomic writes."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_facegan


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize(
    "dist,module",
    [
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("opencv-python-headless", "cv2"),
        ("dlib-bin", "dlib"),
        ("mlflow", "mlflow"),
        ("prefect", "prefect"),
        ("fastapi", "fastapi"),
        ("pandas", "pandas"),
        ("pyarrow", "pyarrow"),
        ("pydantic", "pydantic"),
        ("requests", "requests"),
        ("face-recognition-models", "face_recognition_models"),
        ("setuptools", "pkg_resources"),
    ],
)
def test_pinned_dependency_imports_at_its_pinned_version(dist, module):
    __import__(module)
    assert md.version(dist) == _pins()[dist]


def test_key_pins_avoid_the_known_traps():
    import cv2

    pins = _pins()
    assert pins["torch"].startswith("2.14.1") and pins["torchvision"].startswith("0.29.1")
    assert int(pins["setuptools"].split(".")[0]) < 81  # face_recognition_models needs pkg_resources
    assert int(pins["opencv-python-headless"].split(".")[0]) < 5  # Haar cascades exist
    assert pins["fastapi"] == "0.150.0" and pins["prefect"] == "3.8.8"
    assert hasattr(cv2, "CascadeClassifier")
    assert (Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml").is_file()


def test_face_recognition_imports_through_the_guard_and_finds_a_face():
    from conftest import shared
    from PIL import Image

    from facegan.evaluation.face_lib import load

    fr = load()
    with Image.open(shared("photos", "skimage", "astronaut.png")) as im:
        assert len(fr.face_locations(np.asarray(im.convert("RGB")))) >= 1
    with Image.open(shared("negatives", "skimage", "coffee.png")) as im:
        assert fr.face_locations(np.asarray(im.convert("RGB"))) == []


@pytest.mark.no_prefect
def test_every_subcommand_has_help_with_defaults(capsys):
    """In-process through the CLI entry point (test_console_script_is_installed runs the real one)."""
    from facegan.flows.cli import SUBCOMMANDS

    for command in SUBCOMMANDS:
        code, out, err = run_facegan(capsys, command, "--help")
        assert code == 0, err
        assert "(default:" in out, command


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "facegan"
    assert exe.is_file()
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "crop" in proc.stdout and "acquire" in proc.stdout


def test_one_import_root_maps_the_top_level_folders():
    """pyproject.toml installs one import package, facegan, over the top-level folders: every
    folder of the layers that holds an __init__.py is a listed package (facegan.<dotted path>),
    and each layer folder is mapped onto facegan.<layer>."""
    import tomllib

    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    layers = ("config", "models", "evaluation", "tasks", "flows")
    assert setup["package-dir"] == {"facegan": "facegan", **{f"facegan.{layer}": layer for layer in layers}}
    folders = {
        ".".join(("facegan", *init.parent.relative_to(REPO).parts))
        for layer in layers
        for init in (REPO / layer).rglob("__init__.py")
    }
    assert sorted(setup["packages"]) == sorted({"facegan", *folders})
    assert {name.split(".")[0] for name in setup["packages"]} == {"facegan"}
    top_level = md.distribution("facegan").read_text("top_level.txt")
    assert top_level is None or top_level.split() == ["facegan"]


def test_only_facegan_imports_outside_the_repository(tmp_path):
    """Installed, the layers are facegan.<layer> from any directory; the folders' own names are
    no import packages (`import config` fails outside the repository)."""
    code = (
        "import importlib.util, facegan.flows.cli, facegan.tasks.training\n"
        "print([m for m in ('config', 'models', 'tasks', 'flows', 'evaluation') if importlib.util.find_spec(m)])\n"
        "print(facegan.flows.cli.__file__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found, cli = proc.stdout.splitlines()[-2:]
    assert found == "[]" and Path(cli).parts[-2:] == ("flows", "cli.py")


def test_config_reference_is_in_sync():
    from facegan.flows.reference import config_reference

    assert (REPO / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: run `.venv/bin/python -m facegan.flows.reference > docs/config.md`"
    )


def test_config_reference_does_not_depend_on_the_cpu_count(monkeypatch):
    """The reference says "number of CPUs" where a default is the CPU count; a config made on a
    16-core machine still gets 16."""
    from facegan.config.evaluate import EvaluateConfig
    from facegan.config.pipeline import PipelineConfig
    from facegan.flows.reference import config_reference

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert (REPO / "docs" / "config.md").read_text() == config_reference()
    assert PipelineConfig().workers == 16 and EvaluateConfig(run=["x"]).workers == 16


def test_code_below_the_configs_reads_them_and_crop_fingerprints_keep_their_layout():
    """No settings are restated below the configs: the HTTP session and the crop fingerprint read
    the config models themselves. The fingerprint keeps the payload layout of the datasets already
    on disk (these hashes were measured before the settings dataclasses went), so they stay current."""
    from facegan.config import base
    from facegan.config.acquire import PRESETS, AcquireConfig
    from facegan.config.crop import CropConfig
    from facegan.tasks.acquisition import http, presets
    from facegan.tasks.cropping.stage import fingerprint

    assert not hasattr(base, "field_default")
    config = AcquireConfig(preset="lfw", retries=7, backoff=0.25, user_agent="probe/1", workers=3)
    sess = http.session(config)
    adapter = sess.get_adapter("https://example.org/")
    assert (adapter.max_retries.total, adapter.max_retries.backoff_factor) == (7, 0.25)
    assert sess.headers["User-Agent"] == "probe/1" and adapter._pool_maxsize == 3
    assert http.session(config, pool=5).get_adapter("http://example.org/")._pool_maxsize == 5
    rows = [{"path": "/a/b.jpg", "sha256": "ab"}, {"path": "/a/c.png", "sha256": None}]
    assert fingerprint(rows, CropConfig(), True) == "ef1750e4b976424d188e0c2ad9c4239a20edf2ef26bb866fdbef2079d05c7c33"
    other = CropConfig(
        sizes=[64], largest_only=True, aligned=True, pad=0.0, margin=0.2, min_face=30, scale_factor=1.2, min_neighbors=3
    )
    assert fingerprint(rows, other, False) == "3a4ec8c9d269b01237d6fd29d9b641a83691a68881de085b17b30badbf61392c"
    assert set(presets.DOWNLOADS) == set(PRESETS)


def test_default_tracking_store_is_sqlite_in_facegan_home(monkeypatch, facegan_home):
    from facegan.tasks.common import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == f"sqlite:///{facegan_home / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    from facegan.tasks.common.atomic import atomic_path, write_text

    target = tmp_path / "data.txt"
    write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_tracked_run_marks_failure_and_keeps_params(facegan_home):
    from facegan.tasks.common import tracking

    with pytest.raises(ValueError):
        with tracking.run("crop", params={"sizes": [48, 64], "nested": {"a": 1}}) as run:
            run.log_metrics({"crops": 3})
            raise ValueError("boom")
    got = tracking.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.params == {"sizes": "[48, 64]", "nested.a": "1"}
    assert got.data.metrics == {"crops": 3.0}
