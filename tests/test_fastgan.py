"""FastGAN's lite generator (models/fastgan.py), `--model projected-fastgan` and `--model
dcgan-fastgan`: images of every size in [-1, 1], per-sample skip-layer gates, real tiny trainings
against the projected and the DCGAN discriminators, and a saved generator that loads back by its
model name."""

from __future__ import annotations

import pytest
import torch
from conftest import TRAIN_TINY as TINY
from conftest import dataset_path, train_steps

from facegan.config.gans import GANS
from facegan.config.train import TrainConfig
from facegan.models import fastgan
from facegan.tasks.training.trained_generators import generator_payload, load_generator

pytestmark = pytest.mark.no_prefect


@pytest.mark.parametrize("size, excited", [(48, ["4"]), (64, ["4"]), (128, ["4", "5"])])
def test_images_of_every_size_in_range_and_the_coarse_map_gates_the_fine_ones(size, excited):
    torch.manual_seed(0)
    G = fastgan.Generator(size, z_dim=32, features=4).eval()
    assert sorted(G.excite) == excited  # 64 px: the 4 px map gates the 64 px one; 128 px: 8 -> 128 too
    gates = []
    G.excite["4"].main.register_forward_hook(lambda module, args, out: gates.append(out))
    with torch.no_grad():
        images = G(torch.randn(4, 32))
    assert images.shape == (4, 3, size, size)
    assert images.abs().max() <= 1 and images.std() > 0
    assert not torch.allclose(images[0], images[1])
    (gate,) = gates
    assert gate.shape == (4, G.excite["4"].main[1].out_channels, 1, 1)
    assert ((gate > 0) & (gate < 1)).all() and not torch.allclose(gate[0], gate[1])  # per sample


def test_a_training_step_moves_g_and_the_heads_and_the_generator_loads_back(lfw_crops, tmp_path):
    cfg = TrainConfig(dataset=dataset_path(lfw_crops), model="projected-fastgan", d_width=0.25, features=4, **TINY)
    assert GANS["projected-fastgan"].generator == "facegan.models.fastgan:Generator"
    parts, (g_before, d_before), _ = train_steps(cfg, 2)
    assert isinstance(parts.G, fastgan.Generator)
    d_after = parts.D.state_dict()
    assert any(not torch.equal(g_before[k], v) for k, v in parts.G.state_dict().items())
    heads = [k for k in d_before if k.startswith("heads.") and d_before[k].is_floating_point()]
    assert heads and any(not torch.equal(d_before[k], d_after[k]) for k in heads)
    assert all(torch.equal(d_before[k], d_after[k]) for k in d_before if k.startswith("features."))

    meta = dict(model="projected-fastgan", size=64, z_dim=cfg.z_dim, features=4)
    torch.save(generator_payload(parts.G.state_dict(), meta), tmp_path / "g.pt")
    G, loaded_meta = load_generator(str(tmp_path / "g.pt"), device="cpu")
    assert isinstance(G, fastgan.Generator) and loaded_meta["model"] == "projected-fastgan"
    z = torch.randn(3, cfg.z_dim)
    with torch.no_grad():
        assert torch.allclose(G(z), parts.G.eval()(z), atol=1e-6)  # parts.G may be channels_last


def test_the_fastgan_generator_trains_against_the_dcgan_discriminator_with_dcgans_recipe(lfw_crops):
    cfg = TrainConfig(dataset=dataset_path(lfw_crops), model="dcgan-fastgan", features=4, **TINY)
    default = TrainConfig(dataset=dataset_path(lfw_crops), **TINY)
    recipe = ("lr", "beta1", "mode_seeking", "ema", "lr_rampdown", "loss", "d_norm")
    assert [getattr(cfg, k) for k in recipe] == [getattr(default, k) for k in recipe]  # DCGAN's default recipe
    parts, (g_before, d_before), _ = train_steps(cfg, 2)  # every update's metrics finite
    assert isinstance(parts.G, fastgan.Generator) and type(parts.D).__name__ == "Discriminator"
    for before, module in ((g_before, parts.G), (d_before, parts.D)):
        assert any(not torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not GANS["dcgan-fastgan"].nightly  # a comparison model, not a nightly Table 1 row
