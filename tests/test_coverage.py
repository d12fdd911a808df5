"""The coverage (IMLE) term (--coverage W): each real face picks its nearest generated face in
frozen ImageNet features and pulls it closer; the feature network never learns; real faces,
real updates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.models.coverage import FeatureSpace, LatentBank, coverage_loss
from facegan.models.dcgan import Generator
from facegan.tasks.training.data import load_faces
from facegan.tasks.training.updates import dcgan_update
from tests.conftest import dataset_path, train_steps


def _faces(lfw_crops, n: int) -> torch.Tensor:
    """n real LFW crops in [-1, 1], as training sees them."""
    return load_faces(Path(dataset_path(lfw_crops)), 64)[:n].float() / 127.5 - 1


@pytest.mark.no_prefect
def test_each_real_face_finds_itself_among_other_faces_in_the_bank(lfw_crops):
    faces = _faces(lfw_crops, 46)
    space = FeatureSpace()
    real, others = faces[:6], faces[6:]
    bank = LatentBank(size=36)
    added = 0  # each face's latent here is its number
    for chunk in (others[:4], others[4:14], real.flip(0), others[14:]):  # the real faces hidden, reversed
        bank.add(torch.arange(added, added + len(chunk)).float()[:, None], space(chunk))
        added += len(chunk)
    assert len(bank) == 36 and bank.z[0].item() == 10  # a ring: the first ten of 46 faces left it
    assert bank.z[bank.nearest(space(real))].flatten().tolist() == [19, 18, 17, 16, 15, 14]
    # against other people only, the distance is real, and the pretrained network's is its own
    near = (space(real) - bank.features[bank.nearest(space(real))]).pow(2).sum(1)
    assert near.max() < 1e-6
    others_bank = LatentBank(size=40)
    others_bank.add(torch.zeros(40, 1), space(others))
    apart = (space(real) - others_bank.features[others_bank.nearest(space(real))]).pow(2).sum(1).mean()
    assert 0.05 < apart.item() < 4.0
    untrained = FeatureSpace(pretrained=False)
    assert not torch.allclose(untrained(real), space(real), atol=0.05)


@pytest.mark.no_prefect
def test_the_term_pulls_the_generator_towards_real_faces_and_the_features_stay_frozen(lfw_crops):
    torch.manual_seed(0)
    real = _faces(lfw_crops, 8)
    space = FeatureSpace()
    frozen = {k: v.clone() for k, v in space.state_dict().items()}
    space.train()
    assert not any(m.training for m in space.modules())
    G = Generator(64, z_dim=16, features=8)
    opt = torch.optim.Adam(G.parameters(), lr=2e-3)
    bank = LatentBank(size=256)
    losses = []
    for _ in range(40):
        z = torch.randn(16, 16)
        with torch.no_grad():
            bank.add(z, space(G(z)))
        loss = coverage_loss(space, real, G, bank)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5]), losses
    assert all(torch.equal(v, space.state_dict()[k]) for k, v in frozen.items())
    assert all(p.grad is None for p in space.parameters())


@pytest.mark.no_prefect
def test_a_tiny_update_with_the_coverage_term_trains_the_generator(lfw_crops):
    from pydantic import ValidationError

    cfg = TrainConfig(dataset=dataset_path(lfw_crops), features=8, z_dim=16, precision="fp32", coverage=1.0)
    assert cfg.coverage_every == 4 and cfg.coverage_pool == 1024
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
    assert len(parts.bank) == 12  # every update's fakes enter the bank, which keeps the last 12
    # off by default, and run names of runs without it are unchanged
    assert TrainConfig().coverage == 0 and TrainConfig(coverage=0).run_name("lfw") == TrainConfig().run_name("lfw")
    assert TrainConfig(coverage=1).run_name("lfw") != TrainConfig().run_name("lfw")
    with pytest.raises(ValidationError, match="--coverage needs the DCGAN discriminator"):
        TrainConfig(coverage=1, model="wgan-gp")
