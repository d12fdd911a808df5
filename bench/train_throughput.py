"""Training throughput: the canonical pytorch/examples DCGAN loop vs facegan's trainer.

(a) canonical: a faithful re-implementation of pytorch/examples dcgan/main.py's loop — fp32,
    torchvision ImageFolder over the dataset's PNG crops (decoded every step by a DataLoader with
    the example's 2 workers, Resize/CenterCrop/ToTensor/Normalize), batch 64, Sigmoid + BCELoss,
    D real/fake backward then G backward, Adam 2e-4 (0.5, 0.999).
(b) facegan: tasks.training.loop.train_loop with TrainConfig() defaults (bf16 autocast,
    channels_last, faces.npy in memory, EMA, MLflow logging every 20 steps, grids, checkpoint).

Both run the same number of generator steps on the same 64 px crops, alternating in rounds so
a busy machine slows both alike. Prints images/s of each and, last, `ratio: X.XX` (b / a).

    .venv/bin/python bench/train_throughput.py [--dataset NAME|PATH] [--steps 40] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision.datasets as dset  # noqa: E402
import torchvision.transforms as transforms  # noqa: E402

from models.dcgan import Discriminator, Generator  # noqa: E402


def canonical_images_per_sec(folder: Path, steps: int, batch_size: int = 64, workers: int = 2) -> float:
    """pytorch/examples dcgan: netG/netD with a Sigmoid D, BCELoss, fp32, ImageFolder PNGs."""
    with tempfile.TemporaryDirectory() as root:
        os.symlink(folder, Path(root) / "faces")  # ImageFolder wants root/<class>/<images>
        dataset = dset.ImageFolder(root=root, transform=transforms.Compose([
            transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                             num_workers=workers, drop_last=True)
        netG = Generator(64)
        netD = nn.Sequential(Discriminator(64).main, nn.Sigmoid())  # the example's D ends in a Sigmoid
        criterion = nn.BCELoss()
        optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real_label, fake_label, done = 1.0, 0.0, 0
        start = time.perf_counter()
        while done < steps:
            for data in loader:
                netD.zero_grad()
                real_cpu = data[0]
                b_size = real_cpu.size(0)
                label = torch.full((b_size,), real_label, dtype=real_cpu.dtype)
                output = netD(real_cpu).view(-1)
                errD_real = criterion(output, label)
                errD_real.backward()
                noise = torch.randn(b_size, 100, 1, 1)
                fake = netG(noise)
                label.fill_(fake_label)
                output = netD(fake.detach()).view(-1)
                errD_fake = criterion(output, label)
                errD_fake.backward()
                optimizerD.step()
                netG.zero_grad()
                label.fill_(real_label)
                output = netD(fake).view(-1)
                errG = criterion(output, label)
                errG.backward()
                optimizerG.step()
                done += 1
                if done >= steps:
                    break
        return steps * batch_size / (time.perf_counter() - start)


def facegan_images_per_sec(folder: Path, steps: int, round_no: int) -> float:
    from flows.config.train import TrainConfig
    from tasks import tracking
    from tasks.training.loop import train_loop

    cfg = TrainConfig(dataset=str(folder), size=64, steps=steps, score_every=0)
    run = tracking.start_run("bench", run_name="bench-train-throughput")
    with tempfile.TemporaryDirectory() as run_dir:
        meta = {"model": "dcgan", "size": 64, "z_dim": cfg.z_dim, "features": cfg.features,
                "dataset": folder.parent.name, "dataset_path": str(folder), "run_name": f"bench-{round_no}"}
        start = time.perf_counter()
        train_loop(cfg, folder, Path(run_dir), meta, run)
        elapsed = time.perf_counter() - start
    run.finish()
    return steps * cfg.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="crop dataset name or path (default: most recent)")
    parser.add_argument("--steps", type=int, default=40, help="generator steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurement rounds")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='bench-mlflow-')}/mlflow.db")
    from tasks.training.data import resolve_dataset_path

    name, folder = resolve_dataset_path(args.dataset, 64)
    n_png = sum(1 for _ in folder.glob("*.png"))
    print(f"dataset {name}: {folder} ({n_png} PNG crops), torch threads {torch.get_num_threads()}, "
          f"{args.steps} steps x {args.rounds} rounds, batch 64")
    canon, ours = [], []
    for r in range(args.rounds):
        canon.append(canonical_images_per_sec(folder, args.steps))
        print(f"round {r + 1}: canonical (fp32, PNG DataLoader) {canon[-1]:.1f} images/s", flush=True)
        ours.append(facegan_images_per_sec(folder, args.steps, r))
        print(f"round {r + 1}: facegan trainer (defaults)      {ours[-1]:.1f} images/s", flush=True)
    a, b = sum(canon) / len(canon), sum(ours) / len(ours)
    print(f"canonical {a:.1f} images/s, facegan {b:.1f} images/s")
    print(f"ratio: {b / a:.2f}")


if __name__ == "__main__":
    main()
