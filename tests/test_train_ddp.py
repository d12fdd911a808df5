"""Data-parallel training: `--nproc 2` launches torchrun with two CPU processes (gloo) on real LFW
crops; rank 0 alone logs and checkpoints, gradients are averaged so the ranks stay identical
(train_loop checks it at the end and fails otherwise), and each rank reads its own batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import TRAIN_TINY as TINY
from conftest import dataset_path
from conftest import metric_history as history

from facegan.config.train import TrainConfig
from facegan.flows.train import train
from facegan.tasks.common import tracking
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training.data import FaceBatches, load_faces


def test_two_gloo_processes_train_one_run(lfw_crops, facegan_home):
    # with --clusters: rank 0 clusters the faces, and the ranks' weights stay equal (checked at the end)
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops),
        model="dcgan",
        steps=4,
        features=16,
        nproc=2,
        clusters=3,
        name="ddp-dcgan",
        **TINY,
    )
    run_id = train(cfg)

    run = tracking.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["nproc"] == "2"
    for key in ("loss_d", "loss_g"):
        steps = [m.step for m in tracking.metric_history(run_id, key)]
        assert sorted(steps) == [1, 2, 3, 4], (key, steps)  # logged once per step: by rank 0 only
    assert history(run_id, "images_per_sec")
    checkpoints = sorted(p.name for p in (facegan_home / "runs" / "ddp-dcgan" / "checkpoints").glob("step-*.pt"))
    assert checkpoints == ["step-000002.pt", "step-000004.pt"]
    state = ckpt.load_checkpoint(facegan_home / "runs" / "ddp-dcgan" / "checkpoints" / "step-000004.pt")
    assert state["step"] == 4 and state["batches"] == 4  # per-rank batches: 2 ranks x 4 x 8 images seen
    assert run.data.tags.get("facegan.registered_model") == "facegan-dcgan-64"
    assert sorted(set(np.load(facegan_home / "runs" / "ddp-dcgan" / "clusters.npy").tolist())) == [0, 1, 2]


def test_wgan_gp_double_backward_works_across_ranks(lfw_crops, facegan_home):
    cfg = TrainConfig(
        dataset=dataset_path(lfw_crops),
        model="wgan-gp",
        steps=2,
        d_steps=2,
        features=16,
        nproc=2,
        name="ddp-wgan",
        register_model=False,
        **TINY,
    )
    run_id = train(cfg)
    assert tracking.get_run(run_id).info.status == "FINISHED"
    assert sorted(m.step for m in tracking.metric_history(run_id, "gp")) == [1, 2]


def test_ranks_read_disjoint_slices_of_the_same_epoch(lfw_crops):
    faces = load_faces(Path(dataset_path(lfw_crops)), 64)
    single = FaceBatches(faces, 8, seed=3)
    ranks = [FaceBatches(faces, 8, seed=3, rank=r, world=2) for r in (0, 1)]
    assert ranks[0].per_epoch == single.per_epoch // 2
    for i in range(ranks[0].per_epoch):
        for r in (0, 1):
            mine, global_batch = ranks[r].get(i), single.get(2 * i + r)
            # same images as the single-process batch 2i + r (flips are drawn per rank)
            assert torch.allclose(torch.sort(mine.abs().flatten())[0], torch.sort(global_batch.abs().flatten())[0])
