"""The training loop: budgets (steps / epochs / CPU minutes), resume, logging, samples,
checkpoints, realism scoring and the NaN guard. Plain functions; flows/train.py wires them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from facegan.config.errors import TrainingError
from facegan.config.gans import GANS
from facegan.config.train import TrainConfig, kimg_of
from facegan.models.ema import EMA
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training import collectives
from facegan.tasks.training.checkpoints import Counters, load_state, state_dict
from facegan.tasks.training.data import FaceBatches, load_faces
from facegan.tasks.training.device import (
    amp_dtype,
    autocast,
    memory_format,
    pick_device,
    precision_name,
    set_threads,
)
from facegan.tasks.training.samples import CurveScorer, save_grid
from facegan.tasks.training.trained_generators import build_discriminator, build_generator, build_state, resolve
from facegan.tasks.training.updates import Parts

log = logging.getLogger("facegan.train")
DEFAULT_STEPS = 3000


def build_parts(cfg: TrainConfig, device: torch.device) -> Parts:
    """Fresh models and optimizers for a recipe (seeded by the caller)."""
    G = build_generator(cfg.model, cfg.size, cfg.z_dim, cfg.features)
    D = build_discriminator(cfg)
    fmt = memory_format(cfg.channels_last and device.type != "mps")
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    trainable = D.trainable_parameters() if hasattr(D, "trainable_parameters") else D.parameters()
    opt_d = torch.optim.Adam(trainable, lr=cfg.lr_d or cfg.lr, betas=betas)
    return Parts(
        G=G,
        D=D,
        opt_g=opt_g,
        opt_d=opt_d,
        ema=EMA(G, cfg.ema_decay) if cfg.ema else None,
        device=device,
        amp=amp_dtype(device, cfg.precision),
        z_dim=cfg.z_dim,
        d_steps=cfg.d_steps,
        augment=cfg.diffaugment,
        gp_lambda=cfg.gp_lambda,
        gp_every=cfg.gp_every,
        loss=cfg.loss or "bce",
        mode_seeking=cfg.mode_seeking,
        equilibrium=build_state(cfg),
    )


def lr_factor(cfg: TrainConfig, step: int, fraction_done: float) -> float:
    """The learning rates' multiplier for the update after `step` generator updates, with
    `fraction_done` of the budget spent: the paper's step decay (--lr-decay every
    --lr-decay-every steps) times a linear ramp from 1 down to 0 over the budget's last
    --lr-rampdown fraction."""
    decay = cfg.lr_decay ** (step // cfg.lr_decay_every)
    if not cfg.lr_rampdown:
        return decay
    return decay * min(1.0, max(0.0, (1.0 - fraction_done) / cfg.lr_rampdown))


def set_learning_rates(p: Parts, cfg: TrainConfig, factor: float) -> None:
    for opt, lr in ((p.opt_g, cfg.lr), (p.opt_d, cfg.lr_d or cfg.lr)):
        for group in opt.param_groups:
            group["lr"] = lr * factor


class Budget:
    """The first of --steps, --kimg, --epochs, --cpu-minutes reached stops training. kimg counts
    real images shown to D (all ranks), so it converts to steps exactly."""

    def __init__(self, cfg: TrainConfig, per_epoch: int):
        steps = cfg.steps or (None if (cfg.epochs or cfg.cpu_minutes or cfg.kimg) else DEFAULT_STEPS)
        if cfg.kimg:
            kimg_steps = math.ceil(cfg.kimg / cfg.kimg_per_step - 1e-9)
            steps = min(steps, kimg_steps) if steps else kimg_steps
        self.steps = steps
        self.batches = math.ceil(cfg.epochs * per_epoch) if cfg.epochs else None
        self.cpu_seconds = cfg.cpu_minutes * 60 if cfg.cpu_minutes else None
        totals = [t for t in (steps, self.batches and math.ceil(self.batches / cfg.d_steps)) if t]
        self.total = min(totals) if totals else None

    def fraction(self, c: Counters) -> float:
        """How much of the budget is spent: the largest share of any of its limits."""
        return max(
            c.step / self.steps if self.steps else 0.0,
            c.batches / self.batches if self.batches else 0.0,
            c.cpu_seconds / self.cpu_seconds if self.cpu_seconds else 0.0,
        )

    def done(self, c: Counters) -> bool:
        return bool(
            (self.steps and c.step >= self.steps)
            or (self.batches and c.batches >= self.batches)
            or (self.cpu_seconds and c.cpu_seconds >= self.cpu_seconds)
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

    def __init__(self, budget: Budget, first_step: int, cfg: TrainConfig, logger):
        self.budget, self.cfg, self.logger = budget, cfg, logger
        self.every = max(cfg.log_every, (budget.total or 0) // 20) if budget.total else cfg.log_every * 5
        self.start, self.first_step = time.perf_counter(), first_step
        self.detection: float | None = None

    def maybe_log(self, step: int, avg: dict, done: bool) -> None:
        if self.logger is None or not (done or step % self.every < self.cfg.log_every):
            return
        total = self.budget.total
        rate = (step - self.first_step) / max(time.perf_counter() - self.start, 1e-9)
        eta = f", ETA {(total - step) / rate / 60:.1f} min" if total and rate > 0 and not done else ""
        of = f"/{total}" if total else ""
        det = "" if self.detection is None else f", detection {self.detection:.2f}"
        self.logger.info(
            f"step {step}{of}: {avg['kimg']:.1f} kimg, {avg['images_per_sec']:.0f} images/s, "
            f"loss_d {avg['loss_d']:.3f}, loss_g {avg['loss_g']:.3f}{det}{eta}"
        )


def _check_finite(metrics: dict, step: int, last_ckpt: Path | None, cfg: TrainConfig) -> None:
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        kept = f"the last good checkpoint {last_ckpt} is kept" if last_ckpt else "no checkpoint was written yet"
        raise TrainingError(
            f"{bad[0]} became {metrics[bad[0]]} at step {step} ({cfg.model}, lr {cfg.lr}, "
            f"{cfg.precision}): training stopped; {kept}. Resume with a lower --lr "
            "or --precision fp32 under a new --name"
        )


def train_loop(cfg: TrainConfig, dataset_path: Path, run_dir: Path, meta: dict, run) -> dict:
    """Train until the budget is reached; resumes from run_dir/checkpoints when possible.
    `run` is a facegan.tasks.common.tracking.TrackedRun (None on the other ranks of a distributed run: only
    rank 0 logs, samples and checkpoints). Returns the final counters and checkpoint path."""
    ranks = collectives.current()
    threads = set_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda" and ranks.active:
        device = torch.device("cuda", ranks.local_rank)
    precision = precision_name(amp_dtype(device, cfg.precision))
    if device.type == "cpu":
        log.info(
            "training on the CPU with %d torch thread(s) in %s%s",
            threads,
            precision,
            f", rank {ranks.rank} of {ranks.world}" if ranks.active else "",
        )
    if ranks.main:
        run.set_tags({"facegan.precision": precision})  # what autocast really uses here ("auto" resolved)
    faces = load_faces(dataset_path, cfg.size)
    ckpt_dir, sample_dir = run_dir / "checkpoints", run_dir / "samples"
    ckpt.seed_everything(cfg.seed)
    parts = build_parts(cfg, device)
    fmt = memory_format(cfg.channels_last and device.type != "mps")
    data = FaceBatches(faces, cfg.batch_size, cfg.seed, device, fmt, ranks.rank, ranks.world)
    budget = Budget(cfg, data.per_epoch)
    c = Counters()
    logged_through = 0  # steps up to here are already in MLflow: not logged twice
    last = ckpt.latest_checkpoint(ckpt_dir)
    if last is not None:
        c = load_state(parts, ckpt.load_checkpoint(last, map_location=device))
        log.warning("resuming %s from %s (step %d)", meta["run_name"], last.name, c.step)
        if ranks.main:
            run.log_metrics({"resumed_from_step": c.step}, step=c.step)
            logged_through = run.last_step("loss_d")  # a killed run logged past its checkpoint
    if ranks.active:
        for module in (parts.G, parts.D):
            collectives.broadcast_module(module)
        if parts.ema is not None:
            collectives.broadcast_module(parts.ema.model)
        parts.sync = collectives.average_gradients
        if not ranks.main:  # rank 0 keeps the checkpoint's RNG stream; the others draw their own noise
            torch.manual_seed(cfg.seed * 1_000_003 + 7_919 * ranks.rank + c.step)
    fixed_noise = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    scorer = CurveScorer(cfg.score_every, cfg.score_samples, cfg.seed, dataset_path, cfg.size)
    update = resolve(GANS[cfg.model].update)

    def sampler() -> torch.nn.Module:
        """The generator that samples, scores and is published: the EMA one (its BatchNorm
        statistics recomputed for its own weights) when kept, else the live one."""
        if parts.ema is None:
            return parts.G
        return parts.ema.sampler(cfg.z_dim, lambda: autocast(device, parts.amp))

    def progress() -> dict:
        return {"kimg": kimg_of(c.batches, cfg.batch_size, ranks.world), "cpu_seconds": c.cpu_seconds}

    def next_real() -> torch.Tensor:
        batch = data.get(c.batches)
        c.batches += 1
        return batch

    def checkpoint(path: Path) -> Path:
        sampler()  # the EMA's BatchNorm statistics are saved up to date
        return ckpt.save_checkpoint(state_dict(parts, cfg, meta, c), path)

    sums: dict[str, float] = {}  # per metric, over the steps that reported it since the last log
    counts: dict[str, int] = {}
    window = (time.perf_counter(), c.batches)
    bar = tqdm(
        total=budget.total,
        initial=c.step,
        desc=f"train {cfg.model}-{cfg.size}",
        unit="step",
        dynamic_ncols=True,
        disable=None if ranks.main else True,
    )
    lines = ProgressLines(budget, c.step, cfg, run_logger() if ranks.main and bar.disable else None)
    if budget.done(c) and ranks.main:
        kimg = progress()["kimg"]
        run_logger().warning(
            f"budget reached at step {c.step} ({kimg:.1f} kimg): nothing to train; "
            f"pass --steps > {c.step} or --kimg > {kimg:.1f} to continue"
        )
    try:
        while not budget.done(c):
            t0 = time.process_time()
            parts.step = c.step
            set_learning_rates(parts, cfg, lr_factor(cfg, c.step, budget.fraction(c)))
            metrics = update(parts, next_real)
            spent = time.process_time() - t0
            c.cpu_seconds += collectives.total(spent) if ranks.active else spent
            c.step += 1
            _check_finite(metrics, c.step, last, cfg)
            if parts.ema:
                parts.ema.update(parts.G, c.step)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            step = c.step
            bar.update(1)
            if not ranks.main:
                continue
            if step % cfg.log_every == 0 or budget.done(c):
                avg = {k: v / counts[k] for k, v in sums.items()}
                elapsed = time.perf_counter() - window[0]
                avg.update(
                    lr=parts.opt_g.param_groups[0]["lr"],
                    epoch=data.epoch_of(c.batches),
                    images_per_sec=(c.batches - window[1]) * cfg.batch_size * ranks.world / max(elapsed, 1e-9),
                    cpu_minutes=c.cpu_seconds / 60,
                    **progress(),
                )
                if step > logged_through:
                    run.log_metrics(avg, step=step)
                bar.set_postfix(
                    {
                        "kimg": f"{avg['kimg']:.1f}",
                        "img/s": f"{avg['images_per_sec']:.0f}",
                        **{k: f"{avg[k]:.3f}" for k in ("loss_d", "loss_g")},
                        "det": "-" if lines.detection is None else f"{lines.detection:.2f}",
                    }
                )
                lines.maybe_log(step, avg, budget.done(c))
                sums, counts, window = {}, {}, (time.perf_counter(), c.batches)
            if step % cfg.sample_every == 0:
                save_grid(sampler(), fixed_noise, sample_dir / f"step-{step:06d}.png", run)
            if scorer.due(step):
                scores = scorer.score(sampler(), meta)
                if scores is not None:
                    run.log_metrics({**scores, **progress()}, step=step)
                    rate = lines.detection = scores["detection_rate"]
                    if c.best_detection_rate is None or rate > c.best_detection_rate:
                        c.best_detection_rate, c.best_step = rate, step
                        checkpoint(ckpt_dir / ckpt.BEST)
            if step % cfg.checkpoint_every == 0:
                last = checkpoint(ckpt.checkpoint_path(ckpt_dir, step))
                ckpt.prune(ckpt_dir, cfg.keep_checkpoints)
    finally:
        bar.close()
    if ranks.active:
        in_sync = collectives.ranks_agree(parts.G) and collectives.ranks_agree(parts.D)
        if not in_sync:
            raise TrainingError(f"rank {ranks.rank}: the ranks' weights diverged (gradient averaging failed)")
        if not ranks.main:
            return {**asdict(c), "checkpoint": None, "grid": None, "world_size": ranks.world}
    if last is None or last != ckpt.checkpoint_path(ckpt_dir, c.step):
        last = checkpoint(ckpt.checkpoint_path(ckpt_dir, c.step))
        ckpt.prune(ckpt_dir, cfg.keep_checkpoints)
    final_grid = save_grid(sampler(), fixed_noise, sample_dir / "final.png", run)
    return {**asdict(c), "checkpoint": str(last), "grid": str(final_grid), "world_size": ranks.world}
