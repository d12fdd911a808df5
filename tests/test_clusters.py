"""The cluster-conditioned GAN (--clusters K): k-means clusters of the real faces' ImageNet
features, kept with the run; a generator that draws its class from z in the data's shares; a
projection discriminator that starts unconditional; a real training, resumed, and its generator
sampled as evaluation samples it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from facegan.config.train import TrainConfig
from facegan.models.dcgan import Discriminator, Generator
from facegan.tasks.training.clusters import CLUSTERS_FILE, class_shares, cluster_faces, run_clusters
from facegan.tasks.training.data import load_faces
from tests.conftest import TRAIN_TINY, dataset_path, train_steps


@pytest.mark.no_prefect
def test_the_generator_draws_each_class_in_its_share_from_z_alone():
    torch.manual_seed(0)
    G = Generator(64, z_dim=16, features=8, classes=4).eval()
    G.set_class_shares(torch.tensor([100.0, 0.0, 300.0, 600.0]))  # counts: shares 0.1 / 0 / 0.3 / 0.6
    z = torch.randn(40_000, 16)
    drawn = torch.bincount(G.labels(z), minlength=4).float() / len(z)
    assert torch.allclose(drawn, torch.tensor([0.1, 0.0, 0.3, 0.6]), atol=0.01), drawn
    assert torch.equal(G.labels(z[:50]), G.labels(z[:50].clone()))  # a function of z: samplers need no labels
    # the class changes the image: the same z with the embedding of another class
    with torch.no_grad():
        before = G(z[:8])
        G.embed.weight[2] += 1.0
        after = G(z[:8])
    changed = (after - before).abs().flatten(1).amax(1) > 1e-6
    assert changed.tolist() == (G.labels(z[:8]) == 2).tolist()
    with pytest.raises(ValueError, match="need 4 non-negative class shares"):
        G.set_class_shares(torch.ones(3))


@pytest.mark.no_prefect
def test_the_projection_discriminator_starts_unconditional_and_needs_the_classes():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 64, 64)
    conditional = Discriminator(64, 8, classes=5).eval()
    plain = Discriminator(64, 8).eval()
    plain.load_state_dict({k: v for k, v in conditional.state_dict().items() if not k.startswith("embed")})
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(conditional(x, y), plain(x))  # zero embeddings: the DCGAN's D
    with torch.no_grad():
        conditional.embed.weight[3].normal_()
    moved = (conditional(x, y) - plain(x)).abs() > 1e-6
    assert moved.tolist() == (y == 3).tolist()  # only the images of that class
    with pytest.raises(ValueError, match="needs the images' classes"):
        conditional(x)
    with pytest.raises(ValueError, match="one image per logit"):
        Discriminator(64, 8, classes=5, pack=2)


@pytest.mark.no_prefect
def test_clusters_of_real_faces_are_reproducible_and_kept_with_the_run(lfw_crops, tmp_path):
    faces = load_faces(Path(dataset_path(lfw_crops)), 64)[:96]
    labels = cluster_faces(faces, 4, seed=0)
    assert labels.shape == (96,) and set(labels.tolist()) == {0, 1, 2, 3}
    assert np.array_equal(labels, cluster_faces(faces, 4, seed=0))
    # training flips faces at random: a face and its mirror image are one face to the clusters
    both = cluster_faces(torch.cat([faces, faces.flip(-1)]), 4, seed=0)
    assert np.array_equal(both[:96], both[96:])
    assert math.isclose(float(class_shares(torch.from_numpy(labels), 4).sum()), 1.0, rel_tol=1e-6)

    kept = run_clusters(tmp_path, faces, 4, seed=0)
    assert np.array_equal(np.load(tmp_path / CLUSTERS_FILE), kept.numpy())
    np.save(tmp_path / CLUSTERS_FILE, (kept.numpy() + 1) % 4)  # the file, not a new k-means, is what counts
    assert torch.equal(run_clusters(tmp_path, faces, 4, seed=0), (kept + 1) % 4)
    np.save(tmp_path / CLUSTERS_FILE, kept.numpy()[:10])  # labels of another dataset: clustered again
    assert torch.equal(run_clusters(tmp_path, faces, 4, seed=0), kept)
    assert len(np.load(tmp_path / CLUSTERS_FILE)) == 96
    (tmp_path / CLUSTERS_FILE).write_bytes(b"")  # unreadable: clustered again, not a crash
    assert torch.equal(run_clusters(tmp_path, faces, 4, seed=0), kept)
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.no_prefect
def test_a_tiny_cluster_conditioned_update_trains_both_embeddings(lfw_crops):
    cfg = TrainConfig(dataset=dataset_path(lfw_crops), features=8, z_dim=16, precision="fp32", clusters=4, r1=0.1)
    parts, (g_before, d_before), metrics = train_steps(cfg, 3)
    assert not torch.equal(parts.G.embed.weight, g_before["embed.weight"])
    assert not torch.equal(parts.D.embed.weight, d_before["embed.weight"])
    assert d_before["embed.weight"].abs().max() == 0 and parts.D.embed.weight.abs().max() > 0
    assert {"loss_d", "loss_g", "r1", "mode_seeking"} <= set(metrics)
    # the mode-seeking term compares the batch's halves: each pair is drawn from one class
    for _ in range(5):
        z = parts.noise(8)
        assert torch.equal(parts.G.labels(z[:4]), parts.G.labels(z[4:])) and not torch.equal(z[:4], z[4:])


def test_a_cluster_conditioned_run_resumes_on_its_clusters_and_samples_from_z(lfw_crops, facegan_home):
    from pydantic import ValidationError

    from facegan.flows.train import train
    from facegan.tasks.training import checkpoints as ckpt
    from facegan.tasks.training.trained_generators import load_generator, sample_images

    args = dict(dataset=dataset_path(lfw_crops), features=8, z_dim=16, clusters=3, name="clustered", **TRAIN_TINY)
    run_id = train(TrainConfig(steps=2, register_model=False, **args))
    run_dir = facegan_home / "runs" / "clustered"
    labels = np.load(run_dir / CLUSTERS_FILE)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert train(TrainConfig(steps=4, resume=True, **args)) == run_id
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(run_dir / "checkpoints"))["step"] == 4
    assert np.array_equal(np.load(run_dir / CLUSTERS_FILE), labels)
    G, meta = load_generator(run_id)
    assert meta["clusters"] == 3 and G.classes == 3
    shares = torch.bincount(torch.from_numpy(labels), minlength=3).float() / len(labels)
    assert torch.allclose(G.class_cdf, shares.cumsum(0))  # the data's shares, saved with G
    images = sample_images(G, meta, 6, seed=1)
    assert images.shape == (6, 64, 64, 3) and np.array_equal(images, sample_images(G, meta, 6, seed=1))
    assert TrainConfig(clusters=0).run_name("lfw") == TrainConfig().run_name("lfw")  # off: old names resume
    assert TrainConfig(clusters=4).run_name("lfw") != TrainConfig().run_name("lfw")
    for bad, why in ((dict(model="wgan-gp"), "--clusters needs --model dcgan"), (dict(d_pack=2), "--d-pack 1")):
        with pytest.raises(ValidationError, match=why):
            TrainConfig(clusters=4, **bad)
