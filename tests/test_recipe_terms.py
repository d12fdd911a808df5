"""The loss terms a recipe can add to the DCGAN and WGAN-GP updates: the relativistic pairing loss,
R1/R2 (every update or lazily), WGAN-GP's lazy penalty, where self-attention may sit, and PacGAN's
packed discriminator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.flows.train import train
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.loop import build_parts
from tests.conftest import TRAIN_TINY, dataset_path
from tests.conftest import metric_history as history


def first_crops(home: Path, n: int = 8) -> torch.Tensor:
    """The sample dataset's first n 64 px crops as a batch in [-1, 1]."""
    faces = np.load(Path(dataset_path(home)) / "faces.npy")[:n]
    return torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.mark.no_prefect
def test_relativistic_pairing_loss_sees_only_each_pairs_gap():
    from facegan.models.dcgan import LOSSES

    d_loss, g_loss = LOSSES["rpgan"]
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, -3.0, 1.5])
    assert torch.allclose(d_loss(real + 7, fake + 7), d_loss(real, fake))  # a shift of all logits is no news
    assert not torch.allclose(LOSSES["bce"][0](real + 7, fake + 7), LOSSES["bce"][0](real, fake))
    assert torch.isclose(d_loss(real, real), torch.tensor(math.log(2)))  # every pair tied
    assert d_loss(real, fake) < d_loss(fake, real)  # D gains when its reals rank above their fakes
    assert g_loss(fake, real) > g_loss(real, fake)  # G pays when its fakes rank below their reals
    assert not torch.allclose(d_loss(real, fake), d_loss(real, fake.flip(0)))  # pairs, not batch means


@pytest.mark.no_prefect
def test_r1_r2_penalise_ds_gradient_at_the_images_it_judged(lfw_crops):
    """R1 / R2: gamma/2 * E||grad_x D(x)||^2 at the reals / fakes, added to D's own loss: exact on
    a linear D (the gradient is its weight), and in the update the only difference to a run
    without it, from the same weights, noise and batch; lazily every Nth D update, N times the
    weight; other discriminators refuse them."""
    from pydantic import ValidationError

    from facegan.models.dcgan import gradient_norm_penalty
    from facegan.tasks.training.updates import dcgan_update

    w = torch.tensor([1.0, -2.0, 3.0])
    x = torch.randn(4, 3, requires_grad=True)
    assert torch.isclose(gradient_norm_penalty(x @ w, x), w.square().sum())

    real = first_crops(lfw_crops)
    metrics = {}
    for r1, r2 in ((0.0, 0.0), (2.0, 0.0), (0.0, 3.0)):
        cfg = TrainConfig(features=8, z_dim=16, precision="fp32", r1=r1, r2=r2)
        ckpt.seed_everything(0)
        p = build_parts(cfg, torch.device("cpu"))
        metrics[r1, r2] = dcgan_update(p, lambda: real)
    plain, with_r1, with_r2 = metrics.values()
    assert "r1" not in plain and "r2" not in plain and "r2" not in with_r1 and "r1" not in with_r2
    assert with_r1["r1"] > 0 and with_r2["r2"] > 0
    assert math.isclose(with_r1["loss_d"] - plain["loss_d"], 2.0 / 2 * with_r1["r1"], rel_tol=1e-4)
    assert math.isclose(with_r2["loss_d"] - plain["loss_d"], 3.0 / 2 * with_r2["r2"], rel_tol=1e-4)
    assert with_r1["loss_g"] != plain["loss_g"]  # D moved differently, so G's next judgement differs
    # lazy (--r-every 3): on D updates 0, 3, ... weighted 3 x gamma / 2, the others without it
    ckpt.seed_everything(0)
    lazy = build_parts(TrainConfig(features=8, z_dim=16, precision="fp32", r1=2.0, r_every=3), torch.device("cpu"))
    for step in range(5):
        lazy.step = step
        m = dcgan_update(lazy, lambda: real)
        assert ("r1" in m) == (step % 3 == 0), step
    ckpt.seed_everything(0)
    first = dcgan_update(
        build_parts(TrainConfig(features=8, z_dim=16, precision="fp32", r1=2.0, r_every=3), torch.device("cpu")),
        lambda: real,
    )
    assert math.isclose(first["loss_d"] - plain["loss_d"], 3 * 2.0 / 2 * first["r1"], rel_tol=1e-4)
    with pytest.raises(ValidationError, match="--r1 and --r2 need the DCGAN discriminator"):
        TrainConfig(model="wgan-gp", r1=1.0)
    assert TrainConfig(r1=0.0).run_name("lfw") == TrainConfig().run_name("lfw")  # off: old names resume


@pytest.mark.no_prefect
def test_attention_only_where_both_networks_have_a_map_that_wide():
    from pydantic import ValidationError

    assert TrainConfig(size=48, attention=12).attention == 12 and TrainConfig(size=128, attention=64).attention == 64
    for size, side, why in ((64, 4, r"at 64 px use one of \[8, 16, 32\]"), (48, 16, r"\[6, 12, 24\]")):
        with pytest.raises(ValidationError, match=why):
            TrainConfig(size=size, attention=side)
    with pytest.raises(ValidationError, match="--attention needs --model dcgan"):
        TrainConfig(model="projected", attention=16)


@pytest.mark.no_prefect
def test_packed_discriminator_judges_each_pack_of_images_stacked_along_the_channels(lfw_crops):
    """--d-pack 2: one logit per two images, which is a one-pack D's logit on those two images'
    channels stacked (so a pack's logit moves with its own images only); in a real update G and D
    train with finite losses; the pack must divide the batch and needs the DCGAN D."""
    from pydantic import ValidationError

    from facegan.models.dcgan import Discriminator
    from facegan.tasks.training.updates import dcgan_update

    real = first_crops(lfw_crops)
    torch.manual_seed(0)
    packed = Discriminator(64, 8, norm="none", pack=2).eval()
    stacked = Discriminator(64, 8, channels=6, norm="none").eval()
    stacked.load_state_dict(packed.state_dict())
    logits = packed(real.contiguous(memory_format=torch.channels_last))
    assert logits.shape == (4,)
    assert torch.allclose(logits, stacked(real.reshape(4, 6, 64, 64)), atol=1e-6)
    poked = real.clone()
    poked[5] = poked[5].flip(-1)  # image 5 is in pack 2
    moved = (packed(poked) - logits).abs() > 1e-6
    assert moved.tolist() == [False, False, True, False]

    cfg = TrainConfig(features=8, z_dim=16, precision="fp32", d_pack=2, r1=0.1)
    ckpt.seed_everything(0)
    p = build_parts(cfg, torch.device("cpu"))
    before = [[t.detach().clone() for t in net.parameters()] for net in (p.G, p.D)]
    for step in range(3):
        p.step = step
        m = dcgan_update(p, lambda: real)
        assert all(math.isfinite(m[k]) for k in ("loss_d", "loss_g", "d_x", "d_g_z", "r1"))
    for old, net in zip(before, (p.G, p.D)):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters()))
    with pytest.raises(ValidationError, match="--d-pack 3 must divide --batch-size 8"):
        TrainConfig(d_pack=3)
    with pytest.raises(ValidationError, match="--d-pack needs the DCGAN discriminator"):
        TrainConfig(model="projected", d_pack=2)
    assert TrainConfig(d_pack=1).run_name("lfw") == TrainConfig().run_name("lfw")  # off: old names resume


def test_lazy_gradient_penalty_every_nth_critic_update_weighted_n(lfw_crops, facegan_home):
    """--gp-every N: the WGAN-GP penalty on critic updates 0, N, 2N, ... weighted N x lambda, the
    others the plain Wasserstein loss; every update still trains the critic; `gp` is logged on the
    steps that computed one (so a run resumed between two penalties logs no NaN)."""
    from facegan.tasks.training.updates import wgan_gp_update

    real = first_crops(lfw_crops)
    for every in (1, 3):
        cfg = TrainConfig(model="wgan-gp", d_steps=1, gp_every=every, features=8, batch_size=8, z_dim=16)
        ckpt.seed_everything(0)
        p = build_parts(cfg, torch.device("cpu"))
        for step in range(5):
            p.step = step
            before = [t.detach().clone() for t in p.D.parameters()]
            m = wgan_gp_update(p, lambda: real)
            plain = m["d_g_z"] - m["d_x"]
            if step % every == 0:
                assert math.isfinite(m["gp"]) and m["gp"] > 0
                assert math.isclose(m["loss_d"] - plain, cfg.gp_lambda * every * m["gp"], rel_tol=1e-3, abs_tol=1e-4), (
                    every,
                    step,
                )
            else:
                assert "gp" not in m and math.isclose(m["loss_d"], plain, rel_tol=1e-5, abs_tol=1e-6)
            assert any(not torch.equal(a, b) for a, b in zip(before, p.D.parameters()))
    # a real training resumed at step 4 of --gp-every 3 (between two penalties): finite metrics
    args = dict(
        dataset=dataset_path(lfw_crops),
        model="wgan-gp",
        d_steps=1,
        gp_every=3,
        name="lazy-gp",
        **{**TRAIN_TINY, "features": 8, "checkpoint_every": 4, "register_model": False},
    )
    train(TrainConfig(steps=4, **args))
    run_id = train(TrainConfig(steps=8, resume=True, **args))
    gp = history(run_id, "gp")
    assert sorted(gp) == [1, 4, 7] and all(math.isfinite(v) and v > 0 for v in gp.values())
    assert sorted(history(run_id, "loss_d")) == list(range(1, 9))
