"""The face-pipeline flow on a small real LFW folder: nested MLflow runs, the Table 1 report,
and a rerun that skips every stage whose output is current."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, extract_lfw_subset, facegan_result
from PIL import Image

from facegan.config.pipeline import PipelineConfig
from facegan.flows.pipeline import face_pipeline
from facegan.tasks.common import tracking

TINY = dict(steps=3, batch_size=8, features=8, n=20, max_training=40, workers=2, sizes=[48])


def _children(parent_id: str) -> dict[str, list]:
    runs = tracking.find_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    by_stage: dict[str, list] = {}
    for run in runs:
        by_stage.setdefault(run.data.tags["facegan.stage"], []).append(run)
    return by_stage


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, prefect_server) -> dict:
    """One real face-pipeline run (DCGAN + BEGAN, 48 px) on 100 LFW photos in its own data home:
    {"home", "config", "result"}. The nesting test reruns it; the screenshot test shows its report."""
    home = tmp_path_factory.mktemp("pipeline-home")
    src = extract_lfw_subset(tmp_path_factory.mktemp("pipeline-src") / "lfw-mini", 100)
    config = PipelineConfig(source=str(src), name="mini", models=["dcgan", "began"], **TINY)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACEGAN_HOME", str(home))
        result = face_pipeline(config)
    return {"home": home, "config": config, "result": result}


def test_pipeline_nests_stage_runs_and_reuses_current_outputs(pipeline_run, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(pipeline_run["home"]))
    config, first = pipeline_run["config"], pipeline_run["result"]

    parent = tracking.get_run(first["pipeline_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["facegan.stage"] == "pipeline"
    children = _children(first["pipeline_run_id"])
    assert sorted(children) == ["acquire", "crop", "evaluate", "train"]
    assert len(children["train"]) == 2 and {r.data.tags["facegan.model"] for r in children["train"]} == {
        "dcgan",
        "began",
    }
    assert all(r.info.status == "FINISHED" for rs in children.values() for r in rs)
    assert children["acquire"][0].data.metrics["ok"] == 100
    evaluate_run = children["evaluate"][0]
    assert set(evaluate_run.data.tags["facegan.evaluated_runs"].split(",")) == set(first["train_run_ids"].values())
    # the Table 1 report: in the evaluate run and copied into the pipeline run
    assert "report/table1.md" in tracking.list_artifacts(evaluate_run.info.run_id, "report")
    copied = tracking.list_artifacts(first["pipeline_run_id"], "report/48px")
    assert {"report/48px/table1.md", "report/48px/table1.csv", "report/48px/table1.html"} <= set(copied)
    table = first["reports"][48]["markdown"]
    assert "| DCGAN |" in table and "| BEGAN |" in table and "| real control |" in table
    assert first["skipped"] == []
    assert first["reports"][48]["run_id"] == evaluate_run.info.run_id

    # rerun: acquire, crop and evaluate are current; training resumes the same (finished) runs
    second = face_pipeline(config)
    assert second["skipped"] == ["acquire", "crop", "evaluate-48"]
    assert second["train_run_ids"] == first["train_run_ids"]
    assert second["reports"][48]["run_id"] == evaluate_run.info.run_id
    assert tracking.get_run(first["train_run_ids"]["dcgan-48"]).data.metrics["final_step"] == 3
    assert "report/48px/table1.md" in tracking.list_artifacts(second["pipeline_run_id"], "report/48px")


def test_a_rerun_repairs_a_damaged_archive_import_instead_of_skipping_acquire(tmp_path, monkeypatch, prefect_server):
    """The pipeline skips acquire only when the raw set holds its archive whole: with images of
    it deleted since, the rerun extracts it again (and the run after that skips it)."""
    import os
    import zipfile

    from facegan.tasks.acquisition import manifest

    monkeypatch.setenv("FACEGAN_HOME", str(tmp_path / "home"))
    photos = extract_lfw_subset(tmp_path / "src", 12)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for photo in sorted(photos.rglob("*.jpg")):
            zf.write(photo, photo.relative_to(photos.parent))
    config = PipelineConfig(source=str(archive), **dict(TINY, steps=1), skip_evaluate=True)
    assert face_pipeline(config)["skipped"] == []
    raw = tmp_path / "home" / "raw" / "faces"
    images = sorted(manifest.read(raw)["path"])
    assert len(images) == 12
    for path in images[:2]:
        os.unlink(path)

    repaired = face_pipeline(config)
    assert "acquire" not in repaired["skipped"] and all(os.path.isfile(p) for p in images)
    assert "acquire" in face_pipeline(config)["skipped"]


def test_pipeline_cli_bad_source_is_one_line(capfd, tmp_path):
    # in-process (test_first_day runs pipeline's own process)
    code, _, err = facegan_result(capfd, "pipeline", "--source", str(tmp_path / "nope"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"facegan: error: --source {str(tmp_path / 'nope')!r}: no such folder or archive (give a preset: "
        "lfw or celeba, an http(s) URL, a folder or a zip/tar archive)"
    ]
    code, _, err = facegan_result(capfd, "pipeline", "--models", "vae")
    assert code == 2 and "--models 'vae'" in err and len(err.splitlines()) == 1


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium not installed (./setup.sh --browser)")
def test_mlflow_ui_screenshot_of_the_report(pipeline_run, tmp_path):
    report = pipeline_run["result"]["reports"][48]["run_id"]  # the pipeline's evaluate run
    out, runs_out = tmp_path / "shot.png", tmp_path / "runs.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "infra" / "screenshot_mlflow.py"),
            "--run",
            report,
            "--out",
            str(out),
            "--runs-out",
            str(runs_out),
            "--window-size",
            "1600,1000",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"/runs/{report}/artifactPath/report/table1.html" in proc.stdout
    assert "/#/experiments/" in proc.stdout and "workflowType=machine_learning" in proc.stdout
    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape == (1000, 1600)
    report = image[220:700, 560:1000]  # the artifact preview pane, where table1.html renders
    assert (report < 128).mean() > 0.02  # dark text there: the report rendered, not a blank pane
    last_columns = image[280:460, 1250:1580]  # precision, recall, ...: no Assistant panel over them
    assert (last_columns < 128).mean() > 0.01
    runs = np.asarray(Image.open(runs_out).convert("L"))
    assert runs.shape == (1000, 1600)
    # the runs table's first row (run name, date): there whatever else the session's store holds
    # (the pipeline's stage runs are folded under its row, so it may be the only one)
    assert (runs[250:285, 300:900] < 128).mean() > 0.01
    proc = subprocess.run(
        [sys.executable, str(REPO / "infra" / "screenshot_mlflow.py"), "--run", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


@pytest.mark.no_prefect
def test_relative_archive_source_is_named_and_resolved(tmp_path, monkeypatch):
    """The README's main job passes a relative archive path (../shared/data/...): the raw set is
    named after the archive and the acquire stage gets an absolute path."""
    import os
    import tarfile

    from facegan.tasks.acquisition.sources import raw_set_name
    from facegan.tasks.pipeline.stage import acquire_config

    photos = extract_lfw_subset(tmp_path / "src", 2)
    with tarfile.open(tmp_path / "faces-2.tgz", "w:gz") as tar:
        tar.add(photos, arcname="faces")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    config = PipelineConfig(source=os.path.join("..", "faces-2.tgz"))
    acquire = acquire_config(config)
    assert acquire.path == tmp_path / "faces-2.tgz"
    assert raw_set_name(acquire) == "faces-2"


@pytest.mark.no_prefect
def test_every_training_run_gets_the_pipelines_budget():
    from facegan.config.pipeline import DEFAULT_KIMG, DEFAULT_MINUTES
    from facegan.tasks.pipeline.stage import train_configs
    from facegan.tasks.training.loop import Budget

    # no budget given: 60 kimg, or the minutes of training steps if a slow CPU gets there first;
    # no realism scoring while training (the Table 1 report follows)
    (default,) = train_configs(PipelineConfig(), "lfw")
    budget = (default.kimg, default.steps, default.cpu_minutes, default.minutes, default.score_every)
    assert budget == (DEFAULT_KIMG, None, None, DEFAULT_MINUTES, 0)
    assert Budget(default, per_epoch=200).steps == 7500  # 60 kimg at the default recipe's batch 8
    runs = train_configs(PipelineConfig(models=["dcgan", "wgan-gp"], sizes=[64, 128], steps=5, cpu_minutes=60), "x")
    assert [(c.model, c.size) for c in runs] == [("dcgan", 64), ("wgan-gp", 64), ("dcgan", 128), ("wgan-gp", 128)]
    assert {(c.kimg, c.steps, c.cpu_minutes, c.minutes) for c in runs} == {(None, 5, 60.0, None)}  # first reached
    (given,) = train_configs(PipelineConfig(kimg=100, score_every=500), "x")  # a budget given: no time bound
    assert (given.kimg, given.minutes, given.score_every) == (100, None, 500)
    (wgan,) = train_configs(PipelineConfig(models=["wgan-gp"], kimg=32), "x")
    assert Budget(wgan, per_epoch=200).steps == 100  # kimg counts D's images: 64 x 5 critic steps each
