"""Training throughput: the canonical pytorch/examples DCGAN loop vs facegan's trainer.

(a) canonical: a faithful re-implementation of pytorch/examples dcgan/main.py's loop — fp32,
    torchvision ImageFolder over the dataset's PNG crops (decoded every step by a DataLoader with
    the example's 2 workers, Resize/CenterCrop/ToTensor/Normalize), batch 64, Sigmoid + BCELoss,
    D real/fake backward then G backward, Adam 2e-4 (0.5, 0.999).
(b) facegan: facegan.tasks.training.loop.train_loop with TrainConfig() defaults (the default recipe:
    DCGAN + EMA whose BatchNorm statistics are recomputed + learning-rate ramp-down; bf16
    autocast, channels_last, faces.npy in memory, MLflow logging every 20 steps, grids,
    checkpoint), threads chosen by --threads auto.
(c) the projected GANs (`--model projected`: the DCGAN generator against a discriminator on frozen
    ImageNet features; `--model projected-fastgan`: FastGAN's lite generator against it), the
    canonical recipe (`--recipe canonical`: the paper's DCGAN, no EMA), the augmented recipe
    (spectral-norm hinge D, TTUR, DiffAugment, EMA) and WGAN-GP with one critic step and the lazy
    gradient penalty, in the same trainer and threads: each one's step cost relative to
    the canonical DCGAN step.

All are timed in steady state over the same number of images (--steps of batch 64; a smaller
batch takes proportionally more steps, after untimed warm-up steps) on the same 64 px crops,
alternating in rounds so a busy machine slows them alike. The bf16 matrix-multiply roofline of
this CPU (a 4096^3 bf16 matmul on the trainer's threads) is measured in the same run; the
trainer's share of it = images/s x GFLOP per image (2.50 for a DCGAN-64 step at 64 maps, 0.64 at
32, counted by FlopCounterMode: G forward + backward, D on real and fake, D again for G) /
roofline. Without
--dataset, 64 px crops are made from the LFW archive in ../shared/data (FACEGAN_SHARED_DATA).
(d) at 128 px, the default recipe and both projected GANs (--steps-128 steps, one round).
Prints images/s (and images per CPU-second) of each and, last, `ratio: X.XX` (b / a, images/s).

    .venv/bin/python bench/train_throughput.py [--dataset NAME|PATH] [--steps 30] [--warmup 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.datasets as dset
import torchvision.transforms as transforms

from facegan.models.dcgan import Discriminator, Generator


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the DataLoader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def canonical_images_per_sec(
    folder: Path, steps: int, warmup: int, batch_size: int = 64, workers: int = 2
) -> tuple[float, float]:
    """pytorch/examples dcgan: netG/netD with a Sigmoid D, BCELoss, fp32, ImageFolder PNGs."""
    with tempfile.TemporaryDirectory() as root:
        os.symlink(folder, Path(root) / "faces")  # ImageFolder wants root/<class>/<images>
        dataset = dset.ImageFolder(
            root=root,
            transform=transforms.Compose(
                [
                    transforms.Resize(64),
                    transforms.CenterCrop(64),
                    transforms.ToTensor(),
                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                ]
            ),
        )
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True
        )
        netG = Generator(64)
        netD = nn.Sequential(Discriminator(64).main, nn.Sigmoid())  # the example's D ends in a Sigmoid
        criterion = nn.BCELoss()
        optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real_label, fake_label, done = 1.0, 0.0, 0
        start, cpu0 = time.perf_counter(), cpu_seconds()
        while done < warmup + steps:
            batches = iter(loader)
            for data in batches:
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
                if done == warmup:  # steady state: the first steps (worker start-up) are not timed
                    start, cpu0 = time.perf_counter(), cpu_seconds()
                if done >= warmup + steps:
                    break
            batches._shutdown_workers()  # join the workers so their CPU time is counted
        images = steps * batch_size
        return images / (time.perf_counter() - start), images / (cpu_seconds() - cpu0)


def dcgan_step_gflop_per_image(features: int, size: int = 64) -> float:
    """GFLOP of one DCGAN training step per image (2.50 at 64 maps, 0.64 at 32): the generator
    forward + backward (3x its forward) and the discriminator on real and fake and again for G's
    loss, each forward + backward (9x its forward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from facegan.models.dcgan import Discriminator, Generator

    forward = {}
    for name, model, x in (
        ("G", Generator(size, z_dim=100, features=features), torch.randn(2, 100)),
        ("D", Discriminator(size, features=features, norm="batch"), torch.randn(2, 3, size, size)),
    ):
        with FlopCounterMode(display=False) as counter:
            model(x)
        forward[name] = counter.get_total_flops() / 2 / 1e9
    return 3 * forward["G"] + 9 * forward["D"]


# recipes whose step cost is compared with the canonical DCGAN step in the same trainer
COMPARED = {
    "canonical": dict(recipe="canonical"),
    "projected": dict(model="projected"),
    "projected-fastgan": dict(model="projected-fastgan", diffaugment="color,translation"),
    "augmented": dict(recipe="augmented"),
    "wgan-gp, 1 critic step, lazy GP every 4": dict(model="wgan-gp", d_steps=1, lr_d=3e-4, gp_every=4),
}


def bf16_roofline(threads: int, n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of a bf16 n x n x n matmul on `threads` torch threads (best of `repeats`)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a = torch.randn(n, n, dtype=torch.bfloat16)
    b = torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(old)
    return 2 * n**3 / best / 1e9


def crops_folder(n: int, size: int = 64) -> Path:
    """A crop dataset folder (NNNNNN.png + faces.npy) of n LFW crops of `size` px made on the fly."""
    import numpy as np
    from PIL import Image
    from score_throughput import crops_from_lfw  # bench/ is this script's folder: on the path

    faces = crops_from_lfw(n, size)
    folder = Path(tempfile.mkdtemp(prefix="bench-train-crops-")) / "lfw-bench" / str(size)
    folder.mkdir(parents=True)
    for i, face in enumerate(faces):
        Image.fromarray(face).save(folder / f"{i:06d}.png")
    np.save(folder / "faces.npy", faces)
    return folder


def _facegan_seconds(folder: Path, steps: int, threads: int, recipe: dict, size: int = 64) -> tuple[float, float]:
    from facegan.config.train import TrainConfig
    from facegan.tasks.common import tracking
    from facegan.tasks.training.loop import train_loop

    cfg = TrainConfig(dataset=str(folder), size=size, steps=steps, score_every=0, threads=threads, **recipe)
    run = tracking.start_run("bench", run_name="bench-train-throughput")
    with tempfile.TemporaryDirectory() as run_dir:
        meta = {
            "model": cfg.model,
            "size": size,
            "z_dim": cfg.z_dim,
            "features": cfg.features,
            "dataset": folder.parent.name,
            "dataset_path": str(folder),
            "run_name": "bench",
        }
        start, cpu0 = time.perf_counter(), cpu_seconds()
        train_loop(cfg, folder, Path(run_dir), meta, run)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu0
    run.finish()
    return elapsed, cpu


def facegan_images_per_sec(
    folder: Path, steps: int, warmup: int, threads: int, recipe: dict | None = None, size: int = 64
) -> tuple[float, float]:
    """Steady state: time(warmup + steps) - time(warmup), so start-up and the final checkpoint
    and grid cancel out, as the canonical loop's untimed warm-up steps do. `steps` are counted at
    batch 64: a recipe with a smaller batch times as many images in proportionally more steps."""
    from facegan.config.train import TrainConfig

    batch = TrainConfig(**(recipe or {})).batch_size
    steps = max(1, steps * 64 // batch)
    long_wall, long_cpu = _facegan_seconds(folder, warmup + steps, threads, recipe or {}, size)
    short_wall, short_cpu = _facegan_seconds(folder, warmup, threads, recipe or {}, size)
    images = steps * batch
    return images / max(long_wall - short_wall, 1e-9), images / max(long_cpu - short_cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default=None,
        help="crop dataset name or path (default: crops made from ../shared/data's LFW archive)",
    )
    parser.add_argument("--crops", type=int, default=1500, help="LFW crops to make when no --dataset is given")
    parser.add_argument("--steps", type=int, default=30, help="timed generator steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurement rounds")
    parser.add_argument("--steps-128", type=int, default=10, help="timed steps per 128 px measurement (0 = skip)")
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='bench-mlflow-')}/mlflow.db"
    from facegan.config.train import TrainConfig
    from facegan.tasks.common.paths import resolve_dataset_path
    from facegan.tasks.training.device import auto_threads

    if args.dataset is None:
        folder, name = crops_folder(args.crops), "LFW (made from ../shared/data)"
    else:
        name, folder = resolve_dataset_path(args.dataset, 64)
    # the bench's MLflow runs, checkpoints and grids go to a scratch home, never into the user's
    os.environ["FACEGAN_HOME"] = tempfile.mkdtemp(prefix="bench-train-home-")
    n_png = sum(1 for _ in folder.glob("*.png"))
    default = TrainConfig()  # the recipe `facegan train` uses with no options
    print(
        f"dataset {name}: {folder} ({n_png} PNG crops), torch threads {torch.get_num_threads()}, "
        f"{args.steps} steps of batch 64 (or as many images at a smaller batch) x {args.rounds} rounds; "
        f"facegan's default recipe: batch {default.batch_size}, {default.features} maps"
    )
    canon, ours, roofs = [], [], []
    compared: dict[str, list[tuple[float, float]]] = {name: [] for name in COMPARED}
    for r in range(args.rounds):
        canon.append(canonical_images_per_sec(folder, args.steps, args.warmup))
        print(
            f"round {r + 1}: canonical (fp32, PNG DataLoader) {canon[-1][0]:6.1f} images/s "
            f"({canon[-1][1]:.1f} images per CPU-second)",
            flush=True,
        )
        threads = auto_threads()
        print(f"  facegan: {threads} torch thread(s) chosen by its default (--threads auto)", flush=True)
        ours.append(facegan_images_per_sec(folder, args.steps, args.warmup, threads))
        print(
            f"round {r + 1}: facegan trainer (default recipe) {ours[-1][0]:6.1f} images/s "
            f"({ours[-1][1]:.1f} images per CPU-second)",
            flush=True,
        )
        for recipe, rows in compared.items():
            rows.append(facegan_images_per_sec(folder, args.steps, args.warmup, threads, COMPARED[recipe]))
            print(
                f"round {r + 1}: facegan trainer ({recipe}) {rows[-1][0]:6.1f} images/s "
                f"({rows[-1][1]:.1f} images per CPU-second)",
                flush=True,
            )
        roofs.append(bf16_roofline(threads))
        print(f"round {r + 1}: bf16 matmul roofline on {threads} thread(s): {roofs[-1]:.0f} GFLOP/s", flush=True)
    mean = lambda rows, i: sum(row[i] for row in rows) / len(rows)  # noqa: E731
    roofline = sum(roofs) / len(roofs)
    gflop = dcgan_step_gflop_per_image(default.features)
    share = mean(ours, 0) * gflop / roofline
    print(
        f"images per CPU-second: canonical {mean(canon, 1):.1f}, facegan {mean(ours, 1):.1f} "
        f"(ratio {mean(ours, 1) / mean(canon, 1):.2f})"
    )
    dcgan = compared["canonical"]
    print(
        f"default recipe step cost: {mean(dcgan, 0) / mean(ours, 0):.2f}x the canonical DCGAN step "
        f"({mean(ours, 0):.1f} vs {mean(dcgan, 0):.1f} images/s)"
    )
    for recipe, rows in compared.items():
        if recipe != "canonical":
            print(
                f"{recipe} step cost: {mean(dcgan, 0) / mean(rows, 0):.2f}x the canonical DCGAN step "
                f"({mean(rows, 0):.1f} vs {mean(dcgan, 0):.1f} images/s)"
            )
    print(
        f"roofline share: {share:.2f} ({mean(ours, 0):.1f} images/s x {gflop:.2f} GFLOP at {default.features} maps = "
        f"{mean(ours, 0) * gflop:.0f} GFLOP/s of {roofline:.0f} GFLOP/s bf16 matmul)"
    )
    if args.steps_128:
        folder_128 = crops_folder(args.crops // 3, 128)
        default_128 = facegan_images_per_sec(folder_128, args.steps_128, 3, threads, size=128)
        for name in ("projected", "projected-fastgan"):
            other = facegan_images_per_sec(folder_128, args.steps_128, 3, threads, COMPARED[name], 128)
            print(
                f"128 px: default recipe {default_128[0]:.1f} images/s, {name} {other[0]:.1f} images/s: "
                f"{name} step cost {default_128[0] / other[0]:.2f}x the default's"
            )
    print(f"images/s: canonical {mean(canon, 0):.1f}, facegan {mean(ours, 0):.1f}")
    print(f"ratio: {mean(ours, 0) / mean(canon, 0):.2f}")


if __name__ == "__main__":
    main()
