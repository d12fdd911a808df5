"""The DCGAN recipes and their ingredients on real LFW crops: each ingredient trains (finite
losses, G and D change), the EMA generator's BatchNorm statistics are its own, the kimg budget,
and the curve metrics (detection rate, Fréchet distance, recall) logged against kimg."""

from __future__ import annotations

import math

import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.evaluation.metrics import MIN_FACES
from facegan.flows.train import train
from facegan.models.dcgan import Discriminator, Generator, SelfAttention
from facegan.models.ema import EMA, batchnorm_layers
from facegan.tasks.common import tracking
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.loop import Budget, build_parts
from facegan.tasks.training.trained_generators import load_generator
from tests.conftest import dataset_path
from tests.conftest import metric_history as history

TINY = dict(
    batch_size=8,
    log_every=1,
    sample_every=2,
    checkpoint_every=2,
    threads=1,
    score_every=0,
    features=16,
    register_model=False,
)
INGREDIENTS = {
    "canonical": dict(recipe="canonical"),
    "ema": dict(recipe="canonical", ema=True, ema_decay=0.9),
    "diffaugment": dict(recipe="canonical", diffaugment="color,translation,cutout"),
    "sn-hinge": dict(recipe="canonical", d_norm="spectral", loss="hinge"),
    "ttur": dict(recipe="canonical", lr_d=4e-4),
    "rpgan": dict(loss="rpgan"),
    "r3gan": dict(loss="rpgan", r1=0.1, r2=0.1),
    "attention": dict(attention=16),
    "default": dict(recipe="default"),
    "augmented": dict(recipe="augmented"),
}


@pytest.mark.no_prefect
def test_recipes_resolve_to_their_ingredients():
    canonical, default, augmented = TrainConfig(recipe="canonical"), TrainConfig(), TrainConfig(recipe="augmented")
    assert (canonical.d_norm, canonical.loss, canonical.ema, canonical.diffaugment, canonical.lr_d) == (
        "batch",
        "bce",
        False,
        "",
        None,
    )
    assert (default.recipe, default.d_norm, default.loss, default.ema, default.diffaugment) == (
        "default",
        "batch",
        "bce",
        True,
        "",
    )
    assert (augmented.d_norm, augmented.loss, augmented.ema, augmented.ema_decay) == ("spectral", "hinge", True, 0.995)
    assert augmented.diffaugment == "color,translation,cutout" and augmented.lr_d == 2 * augmented.lr
    # the default's Adam beta1 0 (session 38) and mode-seeking 1.0 (session 39); the paper's DCGAN: 0.5, none
    assert (default.beta1, default.mode_seeking, canonical.beta1, canonical.mode_seeking) == (0.0, 1.0, 0.5, 0.0)
    assert TrainConfig(model="wgan-gp").mode_seeking == TrainConfig(model="began").mode_seeking == 0.0
    # a single option overrides its recipe; the run name changes with the recipe
    assert TrainConfig(recipe="canonical", loss="hinge").loss == "hinge"
    assert len({c.run_name("lfw") for c in (canonical, default, augmented)}) == 3
    with pytest.raises(ValueError, match="d_norm"):
        TrainConfig(d_norm="layer")  # LayerNorm is the WGAN-GP critic's (--critic-norm)


@pytest.mark.no_prefect
def test_unset_intervals_are_counted_in_images_not_steps():
    # a small batch must not sample (a BatchNorm recompute of the EMA each time), checkpoint or score
    # more often per image than batch 64 does; given values are kept as steps
    for batch in (8, 16, 64):
        cfg = TrainConfig(batch_size=batch)
        for field, images in (("sample_every", 6_400), ("checkpoint_every", 32_000), ("score_every", 20_000)):
            assert abs(getattr(cfg, field) * batch - images) <= batch / 2, (batch, field)
    wgan = TrainConfig(model="wgan-gp")  # five critic batches per generator step
    assert wgan.sample_every * wgan.batch_size * wgan.d_steps == 6_400 and wgan.score_every == 0
    assert TrainConfig(batch_size=8, sample_every=3, score_every=0).sample_every == 3
    assert TrainConfig(batch_size=8, score_every=0).score_every == 0
    # a curve needs two points: 20 kimg is not scored while training, 40 kimg is (the main job's 60: 3)
    assert TrainConfig(kimg=20).score_every == 0 and TrainConfig(kimg=40).score_every == 2500
    assert TrainConfig(kimg=20, score_every=100).score_every == 100


@pytest.mark.parametrize("ingredient", sorted(INGREDIENTS))
def test_each_recipe_ingredient_trains_on_real_crops(lfw_crops, facegan_home, ingredient):
    cfg = TrainConfig(dataset=dataset_path(lfw_crops), steps=4, **TINY, **INGREDIENTS[ingredient])
    run_id = train(cfg)

    for key in ("loss_d", "loss_g", "d_x", "d_g_z"):
        values = history(run_id, key)
        assert sorted(values) == [1, 2, 3, 4] and all(math.isfinite(v) for v in values.values()), key
    params = tracking.get_run(run_id).data.params
    assert (params["recipe"], params["d_norm"], params["loss"]) == (cfg.recipe, cfg.d_norm, cfg.loss)

    run_dir = facegan_home / "runs" / params["run_name"]
    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "step-000004.pt")
    ckpt.seed_everything(cfg.seed)
    fresh = build_parts(cfg, torch.device("cpu"))
    for name, module in (("G", fresh.G), ("D", fresh.D)):
        before = module.state_dict()
        changed = [k for k, v in state[name].items() if v.is_floating_point() and not torch.equal(v, before[k])]
        assert len(changed) > len(before) // 3, f"{name} did not change"
    assert state["opt_d"]["param_groups"][0]["lr"] == (cfg.lr_d or cfg.lr)
    assert state["opt_g"]["param_groups"][0]["lr"] == cfg.lr
    spectral = any("parametrizations" in k for k in state["D"])
    assert spectral == (cfg.d_norm == "spectral")
    assert (state["ema"] is not None) == cfg.ema
    G, meta = load_generator(run_id)  # what evaluate and generate build from the run's generator file
    assert meta.get("attention", 0) == cfg.attention
    assert any(isinstance(m, SelfAttention) for m in G.modules()) == bool(cfg.attention)


@pytest.mark.no_prefect
def test_ema_generator_batchnorm_statistics_are_its_own():
    """After training moves the live weights, the EMA generator's running statistics must be the
    mean/variance of its OWN activations, not the live generator's."""
    torch.manual_seed(0)
    G = Generator(64, z_dim=16, features=8)
    ema = EMA(G, decay=0.5)
    opt = torch.optim.Adam(G.parameters(), lr=0.05)
    for step in range(5):  # move the live weights far, with train-mode batches updating its stats
        loss = G(torch.randn(16, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(G, step)
    assert ema.stale
    sampler = ema.sampler(z_dim=16, batches=8, batch_size=64)
    assert not ema.stale and not sampler.training

    captured: dict[int, torch.Tensor] = {}
    hooks = [
        bn.register_forward_hook(lambda m, inp, out, i=i: captured.__setitem__(i, inp[0].detach()))
        for i, bn in enumerate(batchnorm_layers(sampler))
    ]
    with torch.no_grad():
        sampler(torch.randn(2048, 16, generator=torch.Generator().manual_seed(123)))
    for hook in hooks:
        hook.remove()
    own_error = live_error = 0.0
    for i, (bn, live_bn) in enumerate(zip(batchnorm_layers(sampler), batchnorm_layers(G))):
        actual_mean = captured[i].mean(dim=(0, 2, 3))
        actual_var = captured[i].var(dim=(0, 2, 3))
        scale = actual_var.sqrt().mean()
        assert torch.allclose(bn.running_mean, actual_mean, atol=0.05 * scale.item() + 1e-4), i
        assert torch.allclose(bn.running_var, actual_var, rtol=0.15, atol=1e-4), i
        own_error += ((bn.running_var - actual_var).abs() / actual_var).mean().item()
        live_error += ((live_bn.running_var - actual_var).abs() / actual_var).mean().item()
    # the live generator's statistics (what used to be copied) do not describe these weights
    assert live_error > 3 * own_error


def test_kimg_budget_and_curve_metrics_in_mlflow(lfw_crops, facegan_home):
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops),
        kimg=0.048,
        **{**TINY, "score_every": 3, "score_samples": 32, "sample_every": 3, "checkpoint_every": 3},
    )
    assert Budget(cfg, per_epoch=100).steps == 6  # 0.048 kimg / (8 images per step) = 6 steps
    run_id = train(cfg)

    kimg = history(run_id, "kimg")
    assert sorted(kimg) == [1, 2, 3, 4, 5, 6] and kimg[6] == pytest.approx(0.048)
    assert sorted(history(run_id, "cpu_seconds")) == [1, 2, 3, 4, 5, 6]
    for key in ("detection_rate", "face_space_n"):
        assert sorted(history(run_id, key)) == [3, 6], key
    # a 6-step generator makes noise: fewer than MIN_FACES faces are detected, so no face-space
    # number (which would rest on non-faces) is logged
    assert all(v < MIN_FACES for v in history(run_id, "face_space_n").values())
    for key in ("frechet", "precision", "recall", "encoding_spread"):
        assert history(run_id, key) == {}, key
    assert 0 <= history(run_id, "detection_rate")[6] <= 1
    assert "realism_curves.png" in tracking.list_artifacts(run_id)


@pytest.mark.no_prefect
def test_spectral_discriminator_is_one_lipschitz_per_layer():
    torch.manual_seed(0)
    D = Discriminator(64, features=8, norm="spectral").train()
    x = torch.randn(4, 3, 64, 64)
    for _ in range(20):  # power iterations converge while training
        D(x)
    D.eval()
    for layer in D.main:
        if isinstance(layer, torch.nn.Conv2d):
            with torch.no_grad():
                sigma = torch.linalg.matrix_norm(layer.weight.flatten(1), ord=2).item()
            assert sigma == pytest.approx(1.0, rel=0.05)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    with torch.no_grad():
        assert torch.isfinite(D(x)).all()


def test_progress_lines_without_a_terminal_and_budget_already_reached(lfw_crops, cli):
    args = [
        "train",
        "--dataset",
        dataset_path(lfw_crops),
        "--steps",
        "4",
        "--batch-size",
        "8",
        "--features",
        "8",
        "--log-every",
        "1",
        "--score-every",
        "0",
        "--threads",
        "1",
        "--no-register-model",
        "--name",
        "progress",
    ]
    env = {"PREFECT_LOGGING_LEVEL": "INFO"}  # the test session runs Prefect at WARNING
    first = cli(*args, env=env, check=True)
    lines = [line for line in first.stderr.splitlines() + first.stdout.splitlines() if " kimg, " in line]
    assert any("step 4/4: 0.0 kimg" in line and "images/s" in line and "loss_d" in line for line in lines), (
        first.stderr[-2000:]
    )
    again = cli(*args, env=env, check=True)
    assert "budget reached at step 4 (0.0 kimg): nothing to train; pass --steps > 4" in again.stderr + again.stdout


def test_learning_rate_ramps_down_to_zero_over_the_budgets_last_fraction(lfw_crops, facegan_home):
    """--lr-rampdown F: both learning rates constant, then linear down towards 0 over the last F
    of the budget (in steps, kimg, epochs or CPU time, whichever ends it); the default recipe
    ramps over the last quarter; a run trained without a ramp cannot be resumed with one (also
    from a checkpoint written before the option existed)."""
    from facegan.config.errors import InputError
    from facegan.tasks.training.loop import Counters, lr_factor

    args = dict(dataset=dataset_path(lfw_crops), steps=8, **TINY)
    run_id = train(TrainConfig(lr_rampdown=0.5, name="rampdown", **args))
    lr = history(run_id, "lr")  # logged after step s: the rate of update s, with (s - 1) / 8 spent
    base = TrainConfig().lr  # the default recipe's 4e-4
    assert [round(lr[s] / base, 6) for s in range(1, 9)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    state = ckpt.load_checkpoint(facegan_home / "runs" / "rampdown" / "checkpoints" / "step-000006.pt")
    assert math.isclose(state["opt_d"]["param_groups"][0]["lr"], 0.75 * base)

    # a CPU-time budget ramps by CPU time; the paper's step decay multiplies in
    cpu = TrainConfig(cpu_minutes=2, lr_decay=0.5, lr_decay_every=10)
    budget = Budget(cpu, per_epoch=100)
    assert TrainConfig().lr_rampdown == 0.25 and cpu.lr_rampdown == 0.25
    assert lr_factor(cpu, 5, budget.fraction(Counters(step=5, cpu_seconds=60))) == 1.0
    assert math.isclose(lr_factor(cpu, 25, budget.fraction(Counters(step=25, cpu_seconds=105))), 0.25 * 0.5)
    assert lr_factor(cpu, 30, budget.fraction(Counters(step=30, cpu_seconds=120))) == 0.0
    # a wall-clock budget (--minutes) ramps and stops by the updates' wall time, whichever comes first
    wall = TrainConfig(minutes=2, kimg=60)
    budget = Budget(wall, per_epoch=100)
    assert budget.steps == 7500 and not budget.done(Counters(step=100, wall_seconds=119))
    assert math.isclose(lr_factor(wall, 100, budget.fraction(Counters(step=100, wall_seconds=105))), 0.5)
    assert budget.done(Counters(step=100, wall_seconds=120)) and budget.done(Counters(step=7500, wall_seconds=1))
    assert budget.time_ended(Counters(step=100, wall_seconds=120)) == (
        "its 2 minutes of training steps (--minutes) at step 100 of 7500"  # logged: a larger budget trains on
    )
    assert budget.time_ended(Counters(step=7500, wall_seconds=120)) is None  # the kimg were all trained
    canonical = TrainConfig(recipe="canonical", lr_decay=0.5, lr_decay_every=10)
    assert canonical.lr_rampdown == 0.0 and lr_factor(canonical, 29, 0.99) == 0.25

    run_id = train(TrainConfig(name="constant", recipe="canonical", **args))
    assert set(history(run_id, "lr").values()) == {2e-4}

    # a real run with a wall-clock budget stops on it, long before its steps, and resumes counting
    timed = dict(args, steps=100_000, minutes=0.02, log_every=10, sample_every=10_000, checkpoint_every=10_000)
    run_id = train(TrainConfig(name="timed", **timed))
    final = tracking.get_run(run_id).data.metrics
    steps, minutes = int(final["final_step"]), final["wall_minutes_total"]
    assert 0 < steps < 100_000 and 0.02 <= minutes < 0.02 + 0.01, (steps, minutes)
    assert history(run_id, "lr")[steps] < base  # ramped down by wall time, not by steps
    train(TrainConfig(name="timed", **dict(timed, minutes=0.04)))  # a larger budget continues the run
    assert int(tracking.get_run(run_id).data.metrics["final_step"]) > steps
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(facegan_home / "runs" / "timed" / "checkpoints"))
    assert 0.04 * 60 <= state["wall_seconds"] < 0.05 * 60
    path = facegan_home / "runs" / "constant" / "checkpoints" / "step-000008.pt"
    old = ckpt.load_checkpoint(path)
    del old["config"]["lr_rampdown"]  # as written before the option existed
    torch.save(old, path)
    with pytest.raises(InputError, match="different lr_rampdown"):
        train(TrainConfig(name="constant", recipe="canonical", lr_rampdown=0.5, **{**args, "steps": 12}))
