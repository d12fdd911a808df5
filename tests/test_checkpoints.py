"""Which checkpoints a run writes, keeps and resumes: the step interval, the wall-clock one
(--checkpoint-minutes), pruning (--keep-checkpoints), and a run whose recipe default changed since.
Real trainings and real files."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import torch
from conftest import REPO, dataset_path, error_lines, facegan_result
from conftest import TRAIN_TINY as TINY
from conftest import metric_history as history

from facegan.config.train import TrainConfig
from facegan.flows.train import train
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.callbacks import Checkpoints, TrainState
from facegan.tasks.training.loop import build_parts


def kept_steps(folder) -> list[int]:
    return [s for s, _ in ckpt.step_checkpoints(folder)]


def test_checkpoint_minutes_checkpoints_a_slow_run_without_changing_it(lfw_crops, facegan_home):
    """A 128 px run at batch 8 reaches its first 32 kimg checkpoint after ~45 minutes on 2 cores:
    the wall-clock checkpoint bounds what a kill loses, and changes no loss."""
    base = dict(dataset=dataset_path(lfw_crops), features=8, register_model=False, steps=5, **TINY)
    base["checkpoint_every"] = 100  # the step interval never falls due in 5 steps
    runs = {
        minutes: train(TrainConfig(checkpoint_minutes=minutes, name=f"ckpt-{minutes}", **base)) for minutes in (1e-9, 0)
    }
    for minutes in runs:  # each wall-clock checkpoint made way for the next, the final one is kept
        assert kept_steps(facegan_home / "runs" / f"ckpt-{minutes}" / "checkpoints") == [5]
    assert history(runs[1e-9], "loss_d") == history(runs[0], "loss_d")
    assert history(runs[1e-9], "loss_g") == history(runs[0], "loss_g")


def test_wall_clock_checkpoints_do_not_push_out_interval_ones(lfw_crops, tmp_path):
    """Every step overdue (1e-9 minutes), an interval of 4 steps, 2 kept: after each step the
    folder holds the 2 newest interval checkpoints and the newest of all; without the clock, only
    the interval ones. (Before, the wall-clock ones counted toward the 2: a 128 px run whose
    interval exceeds ten minutes kept half the kimg it meant to.)"""
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops), features=8, **{**TINY, "checkpoint_every": 4}, keep_checkpoints=2
    )
    seen = {}
    for minutes in (1e-9, 0):
        run_cfg = cfg.model_copy(update={"checkpoint_minutes": minutes})
        parts = build_parts(run_cfg, torch.device("cpu"))
        state = TrainState(run_cfg, parts, ckpt.Counters(), None, None, {}, tmp_path / str(minutes))
        callback, seen[minutes] = Checkpoints(), []
        for step in range(1, 14):
            state.counters.step = step
            callback.on_step(state)
            seen[minutes].append(kept_steps(state.checkpoints))
    assert seen[1e-9] == [[1], [2], [3], [4], [4, 5], [4, 6], [4, 7], [4, 8], [4, 8, 9], [4, 8, 10], [4, 8, 11]] + [
        [8, 12],
        [8, 12, 13],
    ]
    assert seen[0] == [[]] * 3 + [[4]] * 4 + [[4, 8]] * 4 + [[8, 12]] * 2
    assert ckpt.load_checkpoint(tmp_path / "1e-09" / "checkpoints" / "step-000013.pt")["step"] == 13


def test_a_run_of_an_older_default_names_the_options_that_continue_it(lfw_crops, facegan_home, capfd):
    """Session 38 changed the default recipe (beta1 0.5 -> 0, mode-seeking 0 -> 0.25; 1.0 since
    session 39): rerunning a named run of the old default is refused in one line that names the
    flags continuing it."""
    base = dict(dataset=dataset_path(lfw_crops), features=8, register_model=False, name="old-default", **TINY)
    run_id = train(TrainConfig(beta1=0.5, mode_seeking=0.0, steps=2, **base))
    args = ["train", "--dataset", base["dataset"], "--features", "8", "--name", "old-default", "--steps", "4"]
    args += ["--batch-size", "8", "--threads", "1", "--score-every", "0", "--no-register-model"]
    code, _, err = facegan_result(capfd, *args)
    assert code != 0 and len(error_lines(err)) == 1, err
    now = TrainConfig().mode_seeking
    assert now > 0 and f"different beta1 (0.5; now 0.0), mode_seeking (0.0; now {now})" in err
    assert "--beta1 0.5 --mode-seeking 0.0 continues it, or pass a new --name" in err
    assert kept_steps(facegan_home / "runs" / "old-default" / "checkpoints") == [2]  # nothing lost
    code, out, err = facegan_result(capfd, *args, "--beta1", "0.5", "--mode-seeking", "0.0")
    assert code == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == run_id and history(run_id, "resumed_from_step") == {2: 2}


def test_a_full_disk_while_a_checkpoint_is_written_is_one_line_and_the_rerun_completes(lfw_crops, tmp_path):
    """A disk that fills up while a checkpoint is written (here a file size limit under the
    checkpoint's size): torch's own file writer used to turn it into "iostream error" and a
    traceback (exit 1), and marking the MLflow run FAILED, on the same full disk, replaced even
    that. Now: one line naming the checkpoint, no partial file, the run FAILED, and the same
    command with room again trains to the end."""
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"  # its own small MLflow store: the limit must not catch the store's writes
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"FACEGAN_HOME": str(home)}
    command = [sys.executable, "-m", "facegan.flows.cli", "train", "--dataset", dataset_path(lfw_crops)]
    command += ["--name", "full", "--features", "16", "--steps", "4", "--no-register-model"]
    command += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    limit = 4 << 20  # a checkpoint at 16 maps is ~6.5 MB, the store ~1 MB

    def run(preexec=None) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=preexec)

    full = run(lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    checkpoints = home / "runs" / "full" / "checkpoints"
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-3000:]
    [line] = [line for line in error_lines(full.stderr) if line.startswith("facegan:")]
    assert line.startswith(
        f"facegan: error: cannot write {checkpoints / 'step-000002.pt'}: the disk is full or a file size limit is set ("
    ), line
    assert line.endswith(f"; this shell limits files to {limit >> 10} KiB (ulimit -f))"), line
    assert list(checkpoints.iterdir()) == []  # no partial checkpoint under any name
    run_id = json.loads((home / "runs" / "full" / "run.json").read_text())["run_id"]
    assert MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_run(run_id).info.status == "FAILED"

    again = run()
    assert again.returncode == 0, again.stderr[-3000:]
    assert kept_steps(checkpoints) == [2, 4] and torch.load(checkpoints / "step-000004.pt", weights_only=False)["G"]
