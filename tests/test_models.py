"""The pure model code: DCGAN at 48/64/128 from one definition (the canonical 64 px layout),
WGAN-GP critic and gradient penalty, BEGAN auto-encoder and k_t, DiffAugment, EMA."""

from __future__ import annotations

import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.models import began, dcgan, wgan_gp
from facegan.models.diffaugment import diff_augment, parse_policy
from facegan.models.ema import EMA

pytestmark = pytest.mark.no_prefect  # pure model code: no Prefect flow runs here


@pytest.mark.parametrize("size", [48, 64, 128])
def test_dcgan_builds_for_every_size(size):
    G, D = dcgan.Generator(size), dcgan.Discriminator(size)
    x = G(torch.randn(3, 100))
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1  # Tanh output
    assert D(x).shape == (3,)
    kinds = {type(m).__name__ for m in [*G.modules(), *D.modules()]}
    assert not kinds & {"Linear", "MaxPool2d", "AvgPool2d"}  # all-convolutional, no pooling


def test_dcgan_64_is_the_canonical_example():
    G, D = dcgan.Generator(64), dcgan.Discriminator(64)
    g_maps = [m.out_channels for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    d_maps = [m.out_channels for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert g_maps == [512, 256, 128, 64, 3]
    assert d_maps == [64, 128, 256, 512, 1]
    assert sum(p.numel() for p in G.parameters()) == 3_576_704  # pytorch/examples dcgan, nz=100
    assert sum(p.numel() for p in D.parameters()) == 2_765_568
    first_conv_then = list(D.main)[1]
    assert isinstance(first_conv_then, torch.nn.LeakyReLU)  # no BatchNorm on the first D layer
    conv_w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)])
    bn_w = torch.cat([m.weight for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(conv_w.std().item() - 0.02) < 0.002 and abs(bn_w.mean().item() - 1.0) < 0.01


def test_128_adds_a_stage_and_48_starts_at_3x3():
    stages = lambda G: sum(isinstance(m, torch.nn.ConvTranspose2d) for m in G.modules())  # noqa: E731
    assert stages(dcgan.Generator(128)) == stages(dcgan.Generator(64)) + 1
    assert dcgan.Generator(48).main[0].kernel_size == (3, 3)
    with pytest.raises(ValueError, match="unsupported image size 50"):
        dcgan.Generator(50)


def test_wgan_gp_critic_has_no_batchnorm_and_penalty_is_zero_for_unit_gradients():
    C = wgan_gp.Critic(64)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in C.modules())
    with pytest.raises(ValueError):
        wgan_gp.Critic(64, norm="batch")

    class Linear1(torch.nn.Module):  # f(x) = <w, x> with |w| = 1: gradient norm 1 everywhere
        def forward(self, x):
            w = torch.ones_like(x[0]) / x[0].numel() ** 0.5
            return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    assert wgan_gp.gradient_penalty(Linear1(), real, fake).item() == pytest.approx(0.0, abs=1e-6)
    penalty = wgan_gp.gradient_penalty(C, real.repeat(1, 1, 8, 8), fake.repeat(1, 1, 8, 8))
    assert penalty.item() > 0 and penalty.requires_grad


@pytest.mark.parametrize("size", [48, 64, 128])
def test_began_autoencoder_reconstructs_same_shape(size):
    G, D = began.Generator(size, features=16), began.AutoEncoder(size, features=16)
    x = G(torch.randn(2, 64))
    assert x.shape == D(x).shape == (2, 3, size, size)
    assert began.reconstruction_loss(D, x).item() > 0


def test_began_equilibrium_moves_k_towards_balance_and_clips():
    eq = began.Equilibrium(gamma=0.5, lambda_k=0.1)
    m = eq.update(loss_real=1.0, loss_fake=0.2)  # gamma*L(x) > L(G(z)): k grows
    assert eq.k == pytest.approx(0.03) and m == pytest.approx(1.3)
    eq.update(loss_real=0.0, loss_fake=5.0)
    assert eq.k == 0.0  # clipped


def test_diffaugment_is_differentiable_and_changes_images():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    y = diff_augment(x * 2 - 1)
    assert y.shape == x.shape and not torch.allclose(y, x * 2 - 1)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(0)
    cut = diff_augment(torch.ones(64, 3, 16, 16), "cutout")
    holes = (cut == 0).float().mean(dim=(1, 2, 3))
    # every image gets a hole of half the side (8x8 = 1/4 of the image), clipped at the border
    # down to a quarter of it (4x4 = 1/16) when centred on a corner
    assert ((holes >= 1 / 16) & (holes <= 1 / 4)).all() and (holes == 1 / 4).any()
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        parse_policy("color,zoom")


def test_ema_averages_parameters_and_leaves_batchnorm_statistics_stale():
    G = dcgan.Generator(48, features=8)
    ema = EMA(G, decay=0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    G(torch.randn(4, 100))  # updates BatchNorm running stats of the live model
    ema.update(G)
    for b, e, p in zip(before, ema.model.parameters(), G.parameters()):
        assert torch.allclose(e, 0.9 * b + 0.1 * p, atol=1e-6)
    # the live generator's running statistics are not copied: they belong to other weights;
    # the EMA recomputes its own when it samples (tests/test_recipe.py checks them)
    assert ema.stale
    assert not torch.equal(ema.model.main[1].running_mean, G.main[1].running_mean)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_warmup_forgets_the_initial_weights_in_short_runs():
    G = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(G, decay=0.999)
    with torch.no_grad():
        G.weight.fill_(1.0)
        ema.model.weight.fill_(0.0)
    for step in range(1, 1501):
        ema.update(G, step)
    assert ema.model.weight.item() > 0.99  # plain 0.999 decay would leave 1 - 0.999**1500 = 0.78


def test_the_default_recipes_longer_ema_changes_nothing_before_its_warmup_ends():
    # session 43 raised the default recipe's decay from 0.999 to 0.9997: the warm-up
    # (1+t)/(10+t) stays under 0.999 until step 8990 (72 kimg at batch 8), so every shorter run,
    # the main job's 60 kimg among them, keeps exactly the EMA it had; only longer runs average longer
    G = torch.nn.Linear(4, 4)
    old, new = EMA(G, decay=0.999), EMA(G, decay=TrainConfig().ema_decay)
    assert new.decay == 0.9997
    torch.manual_seed(0)
    for step in (0, 1, 100, 7_500, 8_980):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn_like(p))
        old.update(G, step)
        new.update(G, step)
        assert all(torch.equal(a, b) for a, b in zip(old.model.parameters(), new.model.parameters()))
    with torch.no_grad():
        G.weight.add_(1.0)
    old.update(G, 30_000)  # past the warm-up: 0.999 against 0.9997
    new.update(G, 30_000)
    gap = (G.weight - new.model.weight).abs().mean() / (G.weight - old.model.weight).abs().mean()
    assert gap.item() == pytest.approx(0.9997 / 0.999, rel=1e-3)


def test_mode_seeking_term_rewards_images_that_differ_as_their_latents_do():
    z = torch.randn(4, 100)
    alike = torch.zeros(4, 3, 8, 8) + torch.randn(1, 3, 8, 8)  # every z, nearly one image
    alike[:2] += 0.01
    varied = torch.randn(4, 3, 8, 8)
    assert dcgan.mode_seeking_loss(alike, z) > 10 * dcgan.mode_seeking_loss(varied, z)
    # the pairs are (0, 2) and (1, 3): 1 / (mean|x0 - x2| / mean|z0 - z2|), averaged over pairs
    gaps = [(varied[i] - varied[i + 2]).abs().mean() / (z[i] - z[i + 2]).abs().mean() for i in (0, 1)]
    expected = sum(1 / (g + 1e-5) for g in gaps) / 2
    assert torch.isclose(dcgan.mode_seeking_loss(varied, z), expected)
    assert dcgan.mode_seeking_loss(varied[:1], z[:1]) == 0  # a batch of one has no pair (--batch-size 1)


def test_minibatch_stddev_lets_d_see_a_batch_of_one_face():
    varied = torch.randn(8, 16, 4, 4)
    one_face = torch.randn(1, 16, 4, 4).expand(8, 16, 4, 4)
    out = dcgan.minibatch_stddev(varied, 4)
    assert out.shape == (8, 17, 4, 4) and torch.equal(out[:, :16], varied)
    # groups are images (i, i + 2, i + 4, i + 6): group 0 holds the even images
    expected = varied[0::2].var(0, unbiased=False).add(1e-8).sqrt().mean()
    assert torch.isclose(out[0, 16, 0, 0], expected) and torch.allclose(out[0::2, 16], expected)
    assert dcgan.minibatch_stddev(one_face, 4)[:, 16].max() < 1e-3 < out[:, 16].min()
    assert dcgan.minibatch_stddev(varied[:6], 4)[:, 16].unique().numel() == 2  # 6 images: groups of 3
    D = dcgan.Discriminator(64, 8, mbstd=4)
    assert D(torch.randn(5, 3, 64, 64)).shape == (5,)  # a batch no group size divides
    assert D.main[-1].in_channels == 8 * 8 + 1
    face = torch.randn(1, 3, 64, 64)
    alike, varied_batch = face.expand(4, 3, 64, 64), torch.cat([face, torch.randn(3, 3, 64, 64)])
    plain = dcgan.Discriminator(64, 8).eval()
    with torch.no_grad():  # eval mode: BatchNorm no longer couples the batch, the new channel does
        assert torch.allclose(plain(alike)[0], plain(varied_batch)[0])
        assert not torch.allclose(D.eval()(alike)[0], D(varied_batch)[0])


def test_self_attention_starts_as_the_dcgan_and_lets_far_pixels_talk():
    """--attention: one SAGAN block in G and one in D at the feature maps that wide. With gamma at 0
    (as built) the networks compute exactly the plain DCGAN's; once gamma moves, a feature at one
    corner changes the output at the opposite one, which no single 4x4 convolution can do."""
    block = dcgan.SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    poked = x.clone()
    poked[:, :, 0, 0] += 5
    assert not torch.allclose(block(poked)[:, :, 7, 7], block(x)[:, :, 7, 7])

    for net, plain, channels in (
        (dcgan.Generator(64, 16, 8, attention=16), dcgan.Generator(64, 16, 8), 16),  # G: 32, 16, 8 maps
        (dcgan.Discriminator(64, 8, attention=16), dcgan.Discriminator(64, 8), 16),  # D: 8, 16, 32
    ):
        blocks = [m for m in net.modules() if isinstance(m, dcgan.SelfAttention)]
        assert len(blocks) == 1 and blocks[0].value.in_channels == channels
        others = [m for m in net.main if not isinstance(m, dcgan.SelfAttention)]
        assert len(others) == len(plain.main)
        for mine, theirs in zip(others, plain.main):
            mine.load_state_dict(theirs.state_dict())
        inputs = torch.randn(4, 16) if isinstance(net, dcgan.Generator) else torch.randn(4, 3, 64, 64)
        net.eval(), plain.eval()
        with torch.no_grad():
            assert torch.allclose(net(inputs), plain(inputs), atol=1e-6)
