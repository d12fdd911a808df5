"""Where does a trained generator leave real faces uncovered, and in which space can one see it?

For the coverage term (`--coverage`, models/coverage.py: each real face pulls its nearest
generated face closer) to have anything to pull, a real face must lie further from the nearest
generated face than from the nearest other real face. This measures that gap: real crops as
queries, against a pool of other real crops and a pool of the generator's faces (EMA weights,
fixed noise), the mean squared distance to the nearest of each, in

  - pixels (the crop averaged to 16x16)
  - EfficientNet-lite0's four ImageNet taps (strides 4, 8, 16: averaged to 4x4 positions;
    stride 32: pooled), L2-normalised (stride 8 is the coverage term's space)
  - face encodings (face_recognition, the yardstick of Table 1; --encodings, a few minutes)

for a small and a large pool. Prints one row per space and pool: nearest real, nearest
generated, and their ratio (1.0: the generator covers real faces as well as other real faces
do), and, last, `ratio: X.XX` (the coverage term's space, the large pool).

    .venv/bin/python bench/coverage_gap.py RUN [--dataset lfw] [--queries 400] [--pool 2000]
        [--small-pool 32] [--encodings]

RUN: an MLflow run id or name, a checkpoint (.pt) or models:/name/version, as `facegan generate`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F


def imagenet_spaces(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Images in [-1, 1] -> {space: (N, D) L2-normalised features}."""
    from facegan.models.projected import IMAGENET_MEAN, IMAGENET_STD, feature_network

    parts = feature_network(pretrained=True).eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    names = ["pixels 16x16", "ImageNet stride 4", "ImageNet stride 8", "ImageNet stride 16", "ImageNet stride 32"]
    out: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    with torch.no_grad():
        for chunk in images.split(200):
            out[names[0]].append(F.adaptive_avg_pool2d(chunk, 16).flatten(1))
            x = ((chunk + 1) / 2 - mean) / std
            for i, part in enumerate(parts):
                x = part(x)
                out[names[i + 1]].append(F.adaptive_avg_pool2d(x, 4 if i < 3 else 1).flatten(1).float())
    return {name: F.normalize(torch.cat(chunks), dim=1) for name, chunks in out.items()}


def nearest_sq(queries: torch.Tensor, pool: torch.Tensor) -> float:
    return torch.cdist(queries, pool).min(1).values.pow(2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="MLflow run id or name, checkpoint (.pt) or models:/name/version")
    parser.add_argument("--dataset", default="lfw", help="crop dataset NAME or PATH (64 px crops)")
    parser.add_argument("--queries", type=int, default=400, help="real faces whose nearest neighbours are measured")
    parser.add_argument("--pool", type=int, default=2000, help="the large pool: real and generated faces each")
    parser.add_argument("--small-pool", type=int, default=32)
    parser.add_argument("--encodings", action="store_true", help="also face encodings (pool capped at 1000)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from facegan.tasks.common.paths import resolve_dataset_path
    from facegan.tasks.training.data import load_faces
    from facegan.tasks.training.trained_generators import load_generator, sample_images

    G, meta = load_generator(args.run)
    _, folder = resolve_dataset_path(args.dataset, meta["size"])
    faces = load_faces(folder, meta["size"])
    order = torch.randperm(len(faces), generator=torch.Generator().manual_seed(1))
    real = faces[order[: args.queries + args.pool]].float() / 127.5 - 1
    queries, reference = real[: args.queries], real[args.queries :]
    fake = torch.from_numpy(sample_images(G, meta, args.pool, seed=5)).permute(0, 3, 1, 2).float() / 127.5 - 1

    spaces = {name: (feats[: args.queries], feats[args.queries :]) for name, feats in imagenet_spaces(real).items()}
    generated = imagenet_spaces(fake)
    rows = [(name, q, r, generated[name]) for name, (q, r) in spaces.items()]
    if args.encodings:
        from facegan.evaluation.embeddings import encode

        def u8(x: torch.Tensor) -> np.ndarray:
            return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

        cap = min(args.pool, 1000)
        q, r, f = (torch.from_numpy(encode(u8(x), workers=1)) for x in (queries, reference[:cap], fake[:cap]))
        rows.append(("face encodings", q, r, f))

    print(f"{'space':20} {'pool':>6} {'nearest real':>13} {'nearest generated':>18} {'ratio':>6}")
    term_ratio = float("nan")
    for name, q, r, f in rows:
        for pool in (args.small_pool, min(len(r), len(f))):
            near_real, near_fake = nearest_sq(q, r[:pool]), nearest_sq(q, f[:pool])
            print(f"{name:20} {pool:6d} {near_real:13.3f} {near_fake:18.3f} {near_fake / near_real:6.2f}")
            if name == "ImageNet stride 8" and pool > args.small_pool:
                term_ratio = near_fake / near_real
    print(f"ratio: {term_ratio:.2f}")


if __name__ == "__main__":
    main()
