"""The training loop's periodic work, one callback each: the finite-loss check, the log (MLflow
metrics, progress bar or log lines), the sample grids, the realism scores (and best.pt), the
checkpoints. tasks/training/loop.py runs them.

A callback sees the loop through a `TrainState` and decides itself when its period is due.
The loop calls, on each callback in turn:
- `on_step(state)` after every training step;
- `close()` when training stops, also on an error (the progress bar is closed);
- `at_end(state)` once the budget is reached, on rank 0, the last callback first (the final
  checkpoint is written before the final grid).
Only rank 0 of a distributed run gets more than the finite-loss check.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from facegan.config.errors import TrainingError
from facegan.config.recipe import kimg_of
from facegan.config.train import TrainConfig
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.data import FaceBatches
from facegan.tasks.training.device import autocast
from facegan.tasks.training.samples import CurveScorer, save_grid
from facegan.tasks.training.updates import Parts

log = logging.getLogger("facegan.train")


@dataclass
class TrainState:
    """A running loop as its callbacks see it; the counters are saved in every checkpoint."""

    cfg: TrainConfig
    parts: Parts
    counters: ckpt.Counters
    data: FaceBatches
    run: object  # facegan.tasks.common.tracking.TrackedRun (None on ranks other than 0)
    meta: dict
    run_dir: Path
    world: int = 1  # ranks training together
    metrics: dict[str, float] = field(default_factory=dict)  # the last step's
    done: bool = False  # the budget is reached
    last_checkpoint: Path | None = None  # the newest step checkpoint (resumed from or written)
    detection: float | None = None  # the last detection rate scored
    grid: Path | None = None  # the final sample grid

    @property
    def step(self) -> int:
        return self.counters.step

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def progress(self) -> dict[str, float]:
        c = self.counters
        return {"kimg": kimg_of(c.batches, self.cfg.batch_size, self.world), "cpu_seconds": c.cpu_seconds}

    def sampler(self) -> torch.nn.Module:
        """The generator that samples, scores and is published: the EMA one (its BatchNorm
        statistics recomputed for its own weights) when kept, else the live one."""
        p = self.parts
        if p.ema is None:
            return p.G
        return p.ema.sampler(p.z_dim, partial(autocast, p.device, p.amp))

    def save(self, path: Path) -> Path:
        """A checkpoint of the run as it is now (the EMA's BatchNorm statistics up to date)."""
        self.sampler()
        return ckpt.save_torch_file(ckpt.state_dict(self.parts, self.cfg, self.meta, self.counters), path)


class Callback:
    """Does nothing; a callback overrides the hooks it needs."""

    def on_step(self, state: TrainState) -> None:
        pass

    def close(self) -> None:
        pass

    def at_end(self, state: TrainState) -> None:
        pass


class FiniteCheck(Callback):
    """Stops training at the first loss that is inf or NaN, naming the checkpoint that is kept."""

    def on_step(self, state: TrainState) -> None:
        bad = [k for k, v in state.metrics.items() if not math.isfinite(v)]
        if not bad:
            return
        last, cfg = state.last_checkpoint, state.cfg
        kept = f"the last good checkpoint {last} is kept" if last else "no checkpoint was written yet"
        raise TrainingError(
            f"{bad[0]} became {state.metrics[bad[0]]} at step {state.step} ({cfg.model}, lr {cfg.lr}, "
            f"{cfg.precision}): training stopped; {kept}. Resume with a lower --lr "
            "or --precision fp32 under a new --name"
        )


def run_logger() -> logging.Logger:
    """Prefect's run logger inside a flow or task run (console + Prefect UI), else ours."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return log


class ProgressLines:
    """Without a terminal (no progress bar): a log line about every 5% of the budget with step,
    kimg, images/s, losses, the last detection rate and the ETA."""

    def __init__(self, total: int | None, first_step: int, cfg: TrainConfig, logger):
        self.total, self.cfg, self.logger = total, cfg, logger
        self.every = max(cfg.log_every, total // 20) if total else cfg.log_every * 5
        self.start, self.first_step = time.perf_counter(), first_step

    def maybe_log(self, step: int, avg: dict, done: bool, detection: float | None) -> None:
        if self.logger is None or not (done or step % self.every < self.cfg.log_every):
            return
        total = self.total
        rate = (step - self.first_step) / max(time.perf_counter() - self.start, 1e-9)
        eta = f", ETA {(total - step) / rate / 60:.1f} min" if total and rate > 0 and not done else ""
        of = f"/{total}" if total else ""
        det = "" if detection is None else f", detection {detection:.2f}"
        self.logger.info(
            f"step {step}{of}: {avg['kimg']:.1f} kimg, {avg['images_per_sec']:.0f} images/s, "
            f"loss_d {avg['loss_d']:.3f}, loss_g {avg['loss_g']:.3f}{det}{eta}"
        )


class Log(Callback):
    """Every --log-every steps and at the last: each metric averaged over the steps that reported
    it since the last log, with lr, epoch, images/s, CPU minutes and kimg, to MLflow (only steps
    after `logged_through`: a killed run logged past its last checkpoint, the rerun does not log
    those steps twice) and to the progress bar, or without a terminal to ProgressLines."""

    def __init__(self, state: TrainState, total: int | None, logged_through: int):
        from tqdm.auto import tqdm

        self.logged_through = logged_through
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.window = (time.perf_counter(), state.counters.batches)
        cfg = state.cfg
        self.bar = tqdm(
            total=total,
            initial=state.step,
            desc=f"train {cfg.model}-{cfg.size}",
            unit="step",
            dynamic_ncols=True,
            disable=None,
        )
        self.lines = ProgressLines(total, state.step, cfg, run_logger() if self.bar.disable else None)
        if state.done:
            kimg = state.progress()["kimg"]
            run_logger().warning(
                f"budget reached at step {state.step} ({kimg:.1f} kimg): nothing to train; "
                f"pass --steps > {state.step}, --kimg > {kimg:.1f} or a larger time budget to continue"
            )

    def on_step(self, state: TrainState) -> None:
        for k, v in state.metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.bar.update(1)
        if state.step % state.cfg.log_every == 0 or state.done:
            self.log(state)

    def log(self, state: TrainState) -> None:
        c, step = state.counters, state.step
        avg = {k: v / self.counts[k] for k, v in self.sums.items()}
        elapsed = time.perf_counter() - self.window[0]
        avg.update(
            lr=state.parts.opt_g.param_groups[0]["lr"],
            epoch=state.data.epoch_of(c.batches),
            images_per_sec=(c.batches - self.window[1]) * state.cfg.batch_size * state.world / max(elapsed, 1e-9),
            cpu_minutes=c.cpu_seconds / 60,
            wall_minutes=c.wall_seconds / 60,
            **state.progress(),
        )
        if step > self.logged_through:
            state.run.log_metrics(avg, step=step)
        self.bar.set_postfix(
            {
                "kimg": f"{avg['kimg']:.1f}",
                "img/s": f"{avg['images_per_sec']:.0f}",
                **{k: f"{avg[k]:.3f}" for k in ("loss_d", "loss_g")},
                "det": "-" if state.detection is None else f"{state.detection:.2f}",
            }
        )
        self.lines.maybe_log(step, avg, state.done, state.detection)
        self.sums, self.counts, self.window = {}, {}, (time.perf_counter(), c.batches)

    def close(self) -> None:
        self.bar.close()


class SampleGrids(Callback):
    """The 8x8 grid of a fixed noise, samples/step-NNNNNN.png every --sample-every steps and
    samples/final.png at the end, on disk and in MLflow."""

    def __init__(self, cfg: TrainConfig):
        self.noise = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))

    def on_step(self, state: TrainState) -> None:
        if state.step % state.cfg.sample_every == 0:
            self.save(state, f"step-{state.step:06d}.png")

    def at_end(self, state: TrainState) -> None:
        state.grid = self.save(state, "final.png")

    def save(self, state: TrainState, name: str) -> Path:
        return save_grid(state.sampler(), self.noise, state.run_dir / "samples" / name, state.run)


class Scores(Callback):
    """Every --score-every steps: the curve metrics (CurveScorer) to MLflow, and checkpoints/best.pt
    whenever the detection rate beats the best so far."""

    def __init__(self, cfg: TrainConfig, dataset_path: Path):
        self.scorer = CurveScorer(cfg.score_every, cfg.score_samples, cfg.seed, dataset_path, cfg.size)

    def on_step(self, state: TrainState) -> None:
        if not self.scorer.due(state.step):
            return
        scores = self.scorer.score(state.sampler(), state.meta)
        if scores is None:
            return
        state.run.log_metrics({**scores, **state.progress()}, step=state.step)
        c = state.counters
        rate = state.detection = scores["detection_rate"]
        if c.best_detection_rate is None or rate > c.best_detection_rate:
            c.best_detection_rate, c.best_step = rate, state.step
            state.save(state.checkpoints / ckpt.BEST)


class Checkpoints(Callback):
    """checkpoints/step-NNNNNN.pt every --checkpoint-every steps, at the end, and whenever
    --checkpoint-minutes of wall time have passed since the last one (a checkpoint draws no
    training noise, so when they are written does not change the run). Kept: the newest
    --keep-checkpoints of the step interval, and the newest of all (ckpt.prune)."""

    def __init__(self) -> None:
        self.since = time.monotonic()

    def on_step(self, state: TrainState) -> None:
        minutes = state.cfg.checkpoint_minutes
        overdue = minutes > 0 and time.monotonic() - self.since >= 60 * minutes
        if state.step % state.cfg.checkpoint_every == 0 or overdue:
            self.write(state)

    def at_end(self, state: TrainState) -> None:
        if state.last_checkpoint != ckpt.checkpoint_path(state.checkpoints, state.step):
            self.write(state)

    def write(self, state: TrainState) -> None:
        state.last_checkpoint = state.save(ckpt.checkpoint_path(state.checkpoints, state.step))
        ckpt.prune(state.checkpoints, state.cfg.keep_checkpoints, state.cfg.checkpoint_every)
        self.since = time.monotonic()
