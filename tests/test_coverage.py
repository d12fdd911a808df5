"""The coverage (IMLE) term (--coverage W): each real face picks its nearest generated face in
frozen ImageNet features and pulls it closer; the feature network never learns; real faces,
real updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.models.coverage import FeatureSpace, coverage_loss
from facegan.tasks.training.data import load_faces
from facegan.tasks.training.updates import dcgan_update
from tests.conftest import dataset_path, train_steps


def _faces(lfw_crops, n: int) -> torch.Tensor:
    """n real LFW crops in [-1, 1], as training sees them."""
    return load_faces(Path(dataset_path(lfw_crops)), 64)[:n].float() / 127.5 - 1


@pytest.mark.no_prefect
def test_each_real_face_finds_itself_in_a_pool_of_other_faces(lfw_crops):
    faces = _faces(lfw_crops, 40)
    space = FeatureSpace()
    real, others = faces[:6], faces[6:]
    pool = torch.cat([others[:10], real.flip(0), others[10:]])  # the real faces hidden, reversed
    loss, nearest = coverage_loss(space, real, pool)
    assert nearest.tolist() == [15, 14, 13, 12, 11, 10]
    assert loss.item() < 1e-6
    # against other people only, the distance is real and a pretrained network tells faces apart
    apart, _ = coverage_loss(space, real, others)
    assert 0.05 < apart.item() < 4.0
    untrained, _ = coverage_loss(FeatureSpace(pretrained=False), real, others)
    assert untrained.item() != pytest.approx(apart.item(), rel=0.05)


@pytest.mark.no_prefect
def test_the_term_pulls_the_nearest_generated_face_and_the_features_stay_frozen(lfw_crops):
    torch.manual_seed(0)
    real = _faces(lfw_crops, 8)
    space = FeatureSpace()
    frozen = {k: v.clone() for k, v in space.state_dict().items()}
    space.train()
    assert not any(m.training for m in space.modules())
    pool = torch.zeros(16, 3, 64, 64).uniform_(-1, 1).requires_grad_()
    opt = torch.optim.Adam([pool], lr=0.02)
    first = None
    for _ in range(30):
        loss, nearest = coverage_loss(space, real, pool)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        grad_norms = pool.grad.flatten(1).norm(dim=1)
        assert set(torch.nonzero(grad_norms).flatten().tolist()) <= set(nearest.tolist())  # only the chosen
        opt.step()
    assert loss.item() < 0.5 * first
    assert all(torch.equal(v, space.state_dict()[k]) for k, v in frozen.items())
    assert all(p.grad is None for p in space.parameters())


@pytest.mark.no_prefect
def test_a_tiny_update_with_the_coverage_term_trains_the_generator(lfw_crops):
    from pydantic import ValidationError

    cfg = TrainConfig(dataset=dataset_path(lfw_crops), features=8, z_dim=16, precision="fp32", coverage=1.0)
    assert cfg.coverage_every == 4 and cfg.coverage_pool == 32
    cfg = cfg.model_copy(update=dict(coverage_every=2, coverage_pool=12))
    parts, (g_before, _), metrics = train_steps(cfg, 2)
    assert metrics["coverage"] > 0 and {"loss_d", "loss_g", "mode_seeking"} <= set(metrics)
    assert not parts.feature_space.training
    assert all(torch.equal(v, FeatureSpace().state_dict()[k]) for k, v in parts.feature_space.state_dict().items())
    assert any(not torch.equal(v, parts.G.state_dict()[k]) for k, v in g_before.items())
    # lazy: on every coverage_every-th generator update only
    real = _faces(lfw_crops, 8)
    computed = []
    for step in range(1, 6):
        parts.step = step
        computed.append("coverage" in dcgan_update(parts, lambda: real))
    assert computed == [False, True, False, True, False]
    # off by default, and run names of runs without it are unchanged
    assert TrainConfig().coverage == 0 and TrainConfig(coverage=0).run_name("lfw") == TrainConfig().run_name("lfw")
    assert TrainConfig(coverage=1).run_name("lfw") != TrainConfig().run_name("lfw")
    with pytest.raises(ValidationError, match="--coverage needs the DCGAN discriminator"):
        TrainConfig(coverage=1, model="wgan-gp")
