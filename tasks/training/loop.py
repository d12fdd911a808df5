"""The training loop, read top to bottom in train_loop: build the parts, resume, then one
training step after another until the budget (steps / kimg / epochs / CPU or wall minutes) is
reached, each followed by the callbacks (tasks/training/callbacks.py: the NaN guard, logging,
samples, realism scores, checkpoints). Plain functions; flows/train.py wires them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from facegan.config.errors import TrainingError
from facegan.config.gans import GANS
from facegan.config.train import TrainConfig
from facegan.models.coverage import FeatureSpace, LatentBank
from facegan.models.ema import EMA
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training import collectives
from facegan.tasks.training.callbacks import Checkpoints, FiniteCheck, Log, SampleGrids, Scores, TrainState, run_logger
from facegan.tasks.training.checkpoints import Counters
from facegan.tasks.training.clusters import class_shares, run_clusters
from facegan.tasks.training.data import FaceBatches, load_faces
from facegan.tasks.training.device import amp_dtype, memory_format, pick_device, precision_name, set_threads
from facegan.tasks.training.prepared import TrainSummary
from facegan.tasks.training.trained_generators import build_discriminator, build_generator, build_state, resolve
from facegan.tasks.training.updates import Parts

log = logging.getLogger("facegan.train")
DEFAULT_STEPS = 3000


def build_parts(cfg: TrainConfig, device: torch.device, shares: torch.Tensor | None = None) -> Parts:
    """Fresh models and optimizers for a recipe (seeded by the caller); a cluster-conditioned
    generator draws its classes in `shares` (the clusters' shares of the data)."""
    G = build_generator(cfg.model, cfg.model_dump())
    if shares is not None:
        G.set_class_shares(shares)
    D = build_discriminator(cfg)
    fmt = memory_format(cfg.channels_last and device.type != "mps")
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    # one fused kernel per optimizer step where torch has one (CPU, CUDA): on a CPU Adam's
    # per-tensor loop was ~5% of a default-recipe step at batch 8 (docs/results/throughput.md)
    adam = partial(torch.optim.Adam, betas=(cfg.beta1, cfg.beta2), fused=device.type in ("cpu", "cuda") or None)
    opt_g = adam(G.parameters(), lr=cfg.lr)
    trainable = D.trainable_parameters() if hasattr(D, "trainable_parameters") else D.parameters()
    opt_d = adam(trainable, lr=cfg.lr_d or cfg.lr)
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
        r1=cfg.r1,
        r2=cfg.r2,
        r_every=cfg.r_every,
        classes=cfg.clusters,
        coverage=cfg.coverage,
        coverage_every=cfg.coverage_every,
        feature_space=FeatureSpace().to(device) if cfg.coverage else None,
        bank=LatentBank(cfg.coverage_pool) if cfg.coverage else None,
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
    """The first of --steps, --kimg, --epochs, --cpu-minutes, --minutes reached stops training. kimg
    counts real images shown to D (all ranks), so it converts to steps exactly; the two time budgets
    count only the updates (not sampling, scoring or checkpoints)."""

    def __init__(self, cfg: TrainConfig, per_epoch: int):
        steps = cfg.steps or (None if (cfg.epochs or cfg.cpu_minutes or cfg.minutes or cfg.kimg) else DEFAULT_STEPS)
        if cfg.kimg:
            kimg_steps = math.ceil(cfg.kimg / cfg.kimg_per_step - 1e-9)
            steps = min(steps, kimg_steps) if steps else kimg_steps
        self.steps = steps
        self.batches = math.ceil(cfg.epochs * per_epoch) if cfg.epochs else None
        self.cpu_seconds = cfg.cpu_minutes * 60 if cfg.cpu_minutes else None
        self.wall_seconds = cfg.minutes * 60 if cfg.minutes else None
        totals = [t for t in (steps, self.batches and math.ceil(self.batches / cfg.d_steps)) if t]
        self.total = min(totals) if totals else None

    def fraction(self, c: Counters) -> float:
        """How much of the budget is spent: the largest share of any of its limits."""
        return max(
            c.step / self.steps if self.steps else 0.0,
            c.batches / self.batches if self.batches else 0.0,
            c.cpu_seconds / self.cpu_seconds if self.cpu_seconds else 0.0,
            c.wall_seconds / self.wall_seconds if self.wall_seconds else 0.0,
        )

    def done(self, c: Counters) -> bool:
        return bool(
            (self.steps and c.step >= self.steps)
            or (self.batches and c.batches >= self.batches)
            or (self.cpu_seconds and c.cpu_seconds >= self.cpu_seconds)
            or (self.wall_seconds and c.wall_seconds >= self.wall_seconds)
        )

    def time_ended(self, c: Counters) -> str | None:
        """When a time budget (--cpu-minutes, --minutes) ended training before the step budget
        (--steps, --kimg): which one, and how far the steps got; else None."""
        if not self.steps or c.step >= self.steps:
            return None
        for spent, limit, what in (
            (c.wall_seconds, self.wall_seconds, "minutes of training steps (--minutes)"),
            (c.cpu_seconds, self.cpu_seconds, "CPU-minutes (--cpu-minutes)"),
        ):
            if limit and spent >= limit:
                return f"its {limit / 60:g} {what} at step {c.step} of {self.steps}"
        return None


def training_device(cfg: TrainConfig, ranks: collectives.Ranks) -> torch.device:
    """The device of this rank (its own GPU in a distributed run), torch's threads set."""
    threads = set_threads(cfg.threads)
    device = pick_device(cfg.device)
    if device.type == "cuda" and ranks.active:
        device = torch.device("cuda", ranks.local_rank)
    if device.type == "cpu":
        log.info(
            "training on the CPU with %d torch thread(s) in %s%s",
            threads,
            precision_name(amp_dtype(device, cfg.precision)),
            f", rank {ranks.rank} of {ranks.world}" if ranks.active else "",
        )
    return device


def resume(state: TrainState, main: bool) -> int:
    """Continue from the newest checkpoint in run_dir/checkpoints, if there is one. Returns the
    last step already logged to MLflow (0 when starting afresh, and on ranks other than 0)."""
    last = state.last_checkpoint = ckpt.latest_checkpoint(state.checkpoints)
    if last is None:
        return 0
    state.counters = ckpt.load_state(state.parts, ckpt.load_checkpoint(last, map_location=state.parts.device))
    log.warning("resuming %s from %s (step %d)", state.meta["run_name"], last.name, state.step)
    if not main:
        return 0
    state.run.log_metrics({"resumed_from_step": state.step}, step=state.step)
    return state.run.last_step("loss_d")  # a killed run logged past its checkpoint


def join_ranks(p: Parts, ranks: collectives.Ranks, seed: int, step: int) -> None:
    """Distributed: every rank starts from rank 0's weights and averages its gradients with the
    others; rank 0 keeps the checkpoint's RNG stream, the others draw their own noise."""
    for module in (p.G, p.D):
        collectives.broadcast_module(module)
    if p.ema is not None:
        collectives.broadcast_module(p.ema.model)
    p.sync = collectives.average_gradients
    if not ranks.main:
        torch.manual_seed(seed * 1_000_003 + 7_919 * ranks.rank + step)


def training_clusters(
    cfg: TrainConfig, run_dir: Path, faces: torch.Tensor, ranks: collectives.Ranks, device: torch.device
) -> torch.Tensor:
    """The faces' cluster labels (--clusters): rank 0 clusters them (or reads them back from the
    run folder) and every other rank receives rank 0's."""
    labels = (
        run_clusters(run_dir, faces, cfg.clusters, cfg.seed)
        if ranks.main
        else torch.zeros(len(faces), dtype=torch.int64)
    )
    return collectives.from_main(labels, device) if ranks.active else labels


def next_real(data: FaceBatches, c: Counters, labelled: bool = False):
    """The next batch of real faces (and, when `labelled`, their cluster labels); the batch
    counter says which one it is."""
    batch = data.get(c.batches)
    labels = data.labels_of(c.batches) if labelled else None
    c.batches += 1
    return (batch, labels) if labelled else batch


def train_step(state: TrainState, update: Callable, fraction_done: float, ranks: collectives.Ranks) -> dict:
    """One training step: the GAN's update (its D update(s) on the next real batches, then one G
    update) at this step's learning rates, the generator EMA, the counters. Returns the update's
    metrics."""
    p, c, cfg = state.parts, state.counters, state.cfg
    t0, wall0 = time.process_time(), time.perf_counter()
    p.step = c.step
    set_learning_rates(p, cfg, lr_factor(cfg, c.step, fraction_done))
    metrics = update(p, partial(next_real, state.data, c))
    spent, waited = time.process_time() - t0, time.perf_counter() - wall0
    if ranks.active:  # CPU time of all ranks; wall time as their mean
        spent, waited = collectives.totals(spent, waited / ranks.world)
    c.cpu_seconds += spent
    c.wall_seconds += waited
    c.step += 1
    if p.ema:
        p.ema.update(p.G, c.step)
    return metrics


def train_loop(cfg: TrainConfig, dataset_path: Path, run_dir: Path, meta: dict, run) -> TrainSummary:
    """Train until the budget is reached; resumes from run_dir/checkpoints when possible.
    `run` is a facegan.tasks.common.tracking.TrackedRun (None on the other ranks of a distributed run: only
    rank 0 logs, samples and checkpoints). Returns the final counters and checkpoint path."""
    ranks = collectives.current()
    device = training_device(cfg, ranks)
    if ranks.main:  # what autocast really uses here ("auto" resolved)
        run.set_tags({"facegan.precision": precision_name(amp_dtype(device, cfg.precision))})
    faces = load_faces(dataset_path, cfg.size)
    labels = training_clusters(cfg, run_dir, faces, ranks, device) if cfg.clusters else None
    ckpt.seed_everything(cfg.seed)
    parts = build_parts(cfg, device, None if labels is None else class_shares(labels, cfg.clusters))
    fmt = memory_format(cfg.channels_last and device.type != "mps")
    data = FaceBatches(faces, cfg.batch_size, cfg.seed, device, fmt, ranks.rank, ranks.world, labels)
    budget = Budget(cfg, data.per_epoch)
    state = TrainState(cfg, parts, Counters(), data, run, meta, run_dir, ranks.world)
    logged_through = resume(state, ranks.main)
    if ranks.active:
        join_ranks(parts, ranks, cfg.seed, state.step)
    update = resolve(GANS[cfg.model].update)
    state.done = budget.done(state.counters)

    callbacks = [FiniteCheck()]
    if ranks.main:  # only rank 0 logs, samples, scores and checkpoints
        callbacks += [Log(state, budget.total, logged_through), SampleGrids(cfg), Scores(cfg, dataset_path)]
        callbacks.append(Checkpoints())
    try:
        while not state.done:
            state.metrics = train_step(state, update, budget.fraction(state.counters), ranks)
            state.done = budget.done(state.counters)
            for callback in callbacks:
                callback.on_step(state)
    finally:
        for callback in callbacks:
            callback.close()

    if ranks.active:
        if not (collectives.ranks_agree(parts.G) and collectives.ranks_agree(parts.D)):
            raise TrainingError(f"rank {ranks.rank}: the ranks' weights diverged (gradient averaging failed)")
        if not ranks.main:
            return TrainSummary(**asdict(state.counters), checkpoint=None, grid=None, world_size=ranks.world)
    for callback in reversed(callbacks):  # the final checkpoint, then the final grid
        callback.at_end(state)
    ended = budget.time_ended(state.counters)
    if ended:
        run_logger().info(
            "training ended at %s (%.1f kimg): a larger time budget, or --kimg alone, trains on",
            ended,
            state.progress()["kimg"],
        )
    checkpoint, grid = str(state.last_checkpoint), str(state.grid)
    return TrainSummary(**asdict(state.counters), checkpoint=checkpoint, grid=grid, world_size=ranks.world)
