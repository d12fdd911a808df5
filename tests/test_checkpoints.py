"""Which checkpoints a run writes, keeps and resumes: the step interval, the wall-clock one
(--checkpoint-minutes), pruning (--keep-checkpoints), and a run whose recipe default changed since.
Real trainings and real files."""

from __future__ import annotations

import torch
from conftest import TRAIN_TINY as TINY
from conftest import dataset_path, error_lines, facegan_result
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
