"""The train and generate stages on real LFW crops (the `lfw_crops` session fixture): every model
trains and is tracked, a SIGKILLed run resumes where it stopped, runs are reproducible, NaN losses
stop cleanly, bad input gives one error line."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, dataset_path, facegan_result
from conftest import TRAIN_TINY as TINY
from conftest import metric_history as history
from PIL import Image

from facegan.config.errors import TrainingError
from facegan.config.train import TrainConfig
from facegan.flows.train import train
from facegan.tasks.common import tracking
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.loop import build_parts, train_loop
from facegan.tasks.training.trained_generators import load_generator, sample_images


def initial_generator(cfg: TrainConfig) -> dict:
    ckpt.seed_everything(cfg.seed)
    return {k: v.clone() for k, v in build_parts(cfg, torch.device("cpu")).G.state_dict().items()}


@pytest.mark.parametrize(
    "model,size,features",
    [
        ("dcgan", 48, 16),
        ("dcgan", 64, 32),
        ("dcgan", 128, 8),
        ("wgan-gp", 64, 16),
        ("began", 64, 8),
        ("projected", 64, 16),
    ],
)
def test_each_model_trains_on_real_crops(lfw_crops, facegan_home, model, size, features):
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops, size),
        size=size,
        model=model,
        steps=4,
        features=features,
        d_steps=2 if model == "wgan-gp" else None,
        **TINY,
    )
    run_id = train(cfg)

    run = tracking.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["facegan.stage"] == "train"
    assert run.data.params["model"] == model and run.data.params["dataset"] == "lfw-sample"
    for key in ("loss_d", "loss_g", "d_x", "d_g_z"):
        values = history(run_id, key)
        assert sorted(values) == [1, 2, 3, 4], key
        assert all(math.isfinite(v) for v in values.values()), key
    if model == "began":
        assert set(history(run_id, "M_global")) == {1, 2, 3, 4} and history(run_id, "k_t")
    if model == "wgan-gp":
        assert all(v >= 0 for v in history(run_id, "gp").values())
    artifacts = tracking.list_artifacts(run_id, "samples")
    assert {"samples/step-000002.png", "samples/step-000004.png", "samples/final.png"} <= set(artifacts)
    grid = Image.open(tracking.download_artifacts(run_id, "samples/final.png"))
    assert grid.size == (8 * (size + 2) + 2,) * 2  # torchvision make_grid, 8x8, padding 2
    assert "loss_curves.png" in tracking.list_artifacts(run_id)

    run_dir = facegan_home / "runs" / run.data.params["run_name"]
    assert [s for s, _ in ckpt.step_checkpoints(run_dir / "checkpoints")] == [2, 4]
    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "step-000004.pt")
    assert state["step"] == 4 and state["opt_g"]["state"] and state["rng"]["torch"] is not None
    before = initial_generator(cfg)
    changed = [k for k, v in state["G"].items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, "the generator's parameters did not change"

    G, meta = load_generator(f"models:/facegan-{model}-{size}/latest")
    assert meta["run_id"] == run_id and meta["model"] == model and meta["ema"] is True
    assert meta["model_uri"] == f"models:/facegan-{model}-{size}/{meta['model_version']}"
    assert meta["dataset"] == "lfw-sample" and meta["size"] == size
    images = sample_images(G, meta, 5, seed=3)
    assert images.shape == (5, size, size, 3) and images.dtype == np.uint8
    assert np.array_equal(images, sample_images(G, meta, 5, seed=3, batch_size=2))


def test_same_seed_same_losses_other_seed_other_losses(lfw_crops):
    base = dict(dataset=dataset_path(lfw_crops), steps=3, features=16, register_model=False, **TINY)
    a = train(TrainConfig(name="seed0-a", **base))
    b = train(TrainConfig(name="seed0-b", **base))
    c = train(TrainConfig(name="seed1", seed=1, **base))
    for key in ("loss_d", "loss_g"):
        assert history(a, key) == history(b, key)
        assert history(a, key) != history(c, key)
    again = train(TrainConfig(name="seed0-a", **base))  # rerun of a finished run: nothing to redo
    assert again == a and history(a, "loss_d") == history(b, "loss_d")
    assert "resumed_from_step" in tracking.get_run(a).data.metrics


def _train_args(home: Path, name: str) -> list[str]:
    return [
        "train",
        "--dataset",
        dataset_path(home),
        "--steps",
        "14",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "3",
        "--log-every",
        "1",
        "--sample-every",
        "50",
        "--threads",
        "1",
        "--features",
        "48",
        "--name",
        name,
        "--score-every",
        "0",
        "--no-register-model",
    ]


def test_sigkill_after_second_checkpoint_resumes_same_run_with_same_losses(lfw_crops, facegan_home, capfd):
    # the reference run and the rerun: the real command in-process; the killed run: its own process
    code, out, err = facegan_result(capfd, *_train_args(lfw_crops, "uninterrupted"))
    assert code == 0, err[-3000:]
    ref = out.strip().splitlines()[-1]

    ckpt_dir = facegan_home / "runs" / "killed" / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegan.flows.cli", *_train_args(lfw_crops, "killed")],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300

    def logged_past_second_checkpoint() -> bool:  # step 7 is in MLflow: the rerun redoes it
        if not (ckpt_dir / "step-000006.pt").exists():
            return False
        run_id = json.loads((ckpt_dir.parent / "run.json").read_text())["run_id"]
        return max((m.step for m in tracking.metric_history(run_id, "loss_d")), default=0) >= 7

    while not logged_past_second_checkpoint():
        assert proc.poll() is None and time.time() < deadline, "training ended before its 2nd checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(s for s, _ in ckpt.step_checkpoints(ckpt_dir))
    assert 6 <= killed_at < 14
    run_id = json.loads((ckpt_dir.parent / "run.json").read_text())["run_id"]
    assert tracking.get_run(run_id).info.status == "RUNNING"  # killed: never marked finished

    code, out, err = facegan_result(capfd, *_train_args(lfw_crops, "killed"))
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == run_id  # the same MLflow run
    assert history(run_id, "resumed_from_step") == {killed_at: killed_at}
    assert tracking.get_run(run_id).info.status == "FINISHED"
    assert ckpt.load_checkpoint(ckpt_dir / "step-000014.pt")["step"] == 14
    for key in ("loss_d", "loss_g", "d_x"):  # the losses continue exactly as without the kill
        steps = sorted(m.step for m in tracking.metric_history(run_id, key))
        assert steps == list(range(1, 15)), steps  # each step once, also those redone after the kill
        resumed, expected = history(run_id, key), history(ref, key)
        assert sorted(resumed) == list(range(1, 15))
        assert resumed == expected, key


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(lfw_crops, facegan_home):
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops), model="wgan-gp", d_steps=1, steps=4, features=8, register_model=False, **TINY
    )
    run_id = train(cfg)
    run_dir = facegan_home / "runs" / tracking.get_run(run_id).data.params["run_name"]
    good = (run_dir / "checkpoints" / "step-000004.pt").read_bytes()
    exploding = cfg.model_copy(update={"steps": 8, "gp_lambda": 1e300})  # an overflowing penalty
    with pytest.raises(TrainingError, match=r"loss_d became (inf|nan) at step 5 .*step-000004.pt is kept"):
        train_loop(exploding, Path(dataset_path(lfw_crops)), run_dir, {"run_name": "x"}, tracking.TrackedRun(run_id))
    assert [s for s, _ in ckpt.step_checkpoints(run_dir / "checkpoints")] == [2, 4]
    assert (run_dir / "checkpoints" / "step-000004.pt").read_bytes() == good


def test_precision_auto_keeps_old_names_resumes_bf16_runs_and_records_what_ran(lfw_crops, facegan_home):
    """auto = bf16 only where the CPU has bf16 units (emulated bf16 was ~12x slower on an AVX2 AMD)."""
    from facegan.tasks.training.device import cpu_has_bf16

    base = dict(dataset=dataset_path(lfw_crops), features=8, register_model=False, **TINY)
    old = TrainConfig(precision="bf16", steps=2, **base)
    assert TrainConfig(steps=2, **base).run_name("lfw-sample") == old.run_name("lfw-sample")  # names kept
    assert TrainConfig(precision="fp32", steps=2, **base).run_name("lfw-sample") != old.run_name("lfw-sample")
    run_id = train(old)
    assert tracking.get_run(run_id).data.tags["facegan.precision"] == "bf16"
    resumed = train(TrainConfig(steps=4, **base))  # the same command under the new default continues it
    assert resumed == run_id and history(run_id, "resumed_from_step") == {2: 2}
    assert tracking.get_run(run_id).data.tags["facegan.precision"] == ("bf16" if cpu_has_bf16() else "fp32")
    with pytest.raises(Exception, match="different precision"):  # forcing the other one is another recipe
        train(TrainConfig(precision="fp32", steps=6, name=tracking.get_run(run_id).data.params["run_name"], **base))


def test_generate_writes_pngs_and_grid_deterministically(lfw_crops, facegan_home, capfd, monkeypatch):
    monkeypatch.setenv("FACEGAN_HOME", str(lfw_crops))  # dataset by name, as a user would
    run_id = train(
        TrainConfig(dataset="lfw-sample", steps=2, features=16, name="gen-src", register_model=False, **TINY)
    )
    out1, out2 = facegan_home / "g1", facegan_home / "g2"
    code, _, err = facegan_result(capfd, "generate", "--run", run_id, "-n", "4", "--out", out1)
    assert code == 0, err[-3000:]
    checkpoint = lfw_crops / "runs" / "gen-src" / "checkpoints" / "step-000002.pt"
    code, _, err = facegan_result(capfd, "generate", "--run", checkpoint, "-n", "4", "--out", out2)
    assert code == 0, err[-3000:]
    files = sorted(p.name for p in out1.iterdir())
    assert files == ["000000.png", "000001.png", "000002.png", "000003.png", "generate.json", "grid.png"]
    for name in files[:4]:
        image = Image.open(out1 / name)
        assert image.size == (64, 64) and image.mode == "RGB"
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(out2 / name)))


@pytest.mark.parametrize(
    "args,message,in_subprocess",
    [
        (["--size", "50"], "--size", False),
        (["--batch-size", "0"], "--batch-size", False),
        (["--model", "stylegan"], "--model", False),
        (["--dataset", "EMPTY"], "no crops in", True),  # the real process: one line, exit code 2
        (["--resume"], "no checkpoint to resume", False),
    ],
)
def test_bad_input_gives_one_error_line(lfw_crops, facegan_home, capfd, args, message, in_subprocess):
    empty = facegan_home / "empty-dataset"
    empty.mkdir(parents=True)
    args = [str(empty) if a == "EMPTY" else a for a in args]
    if "--dataset" not in args:
        args += ["--dataset", dataset_path(lfw_crops)]
    code, _, err = facegan_result(capfd, "train", "--steps", "1", *args, in_subprocess=in_subprocess)
    assert code == 2, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and message in error_lines[0], err
    assert not (facegan_home / "runs").exists() or not list((facegan_home / "runs").rglob("*.pt"))


def test_realism_score_is_logged_and_best_checkpoint_kept(lfw_crops, facegan_home):
    pytest.importorskip("facegan.evaluation.detection")
    run_id = train(
        TrainConfig(
            dataset=dataset_path(lfw_crops),
            steps=2,
            features=16,
            name="scored",
            register_model=False,
            **{**TINY, "score_every": 1, "score_samples": 16},
        )
    )
    rates = history(run_id, "detection_rate")
    assert sorted(rates) == [1, 2] and all(0.0 <= r <= 1.0 for r in rates.values())
    best = ckpt.load_checkpoint(facegan_home / "runs" / "scored" / "checkpoints" / ckpt.BEST)
    assert best["best_detection_rate"] == max(rates.values()) and best["best_step"] in (1, 2)


def test_busy_cores_sees_another_process_at_work():
    """auto_threads leaves the cores other processes use: psutil's sample sees a spinning process."""
    from facegan.tasks.training.device import auto_threads, busy_cores

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert busy_cores(1.0) >= 0.6
        assert 1 <= auto_threads() <= (os.cpu_count() or 1)
    finally:
        hog.kill()
        hog.wait()
