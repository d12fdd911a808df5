"""Do the projected discriminator's frozen ImageNet features tell two people apart?

A GAN's discriminator can only push its generator across identities if the space it judges in
separates them. This measures, on real LFW crops of people with many photos, how well each
representation separates identities:

  - pixels: the 64 px crop itself (a floor: pose, light and background dominate)
  - face encodings: face_recognition's 128-d identity embedding (the yardstick of Table 1)
  - EfficientNet-lite0 ImageNet features at each of the projected D's four taps (strides 4-32),
    fed at the D's input size, global-average-pooled and flattened (all positions)
  - the same four taps after the frozen random mixing (CCM + CSM): what the trainable heads see
  - a randomly initialised EfficientNet-lite0 at the same taps (what pretraining adds)

For each: `nn_identity` = leave-one-out nearest-neighbour identity accuracy (cosine) and
`between/within` = mean distance between photos of two people over mean distance between two
photos of one person (1.0: identity is invisible). Prints one table and, last, `ratio: X.XX`
(the pretrained taps' best nn_identity over the random network's best).

    .venv/bin/python bench/feature_identity.py [--dataset lfw] [--people 40] [--photos 10]
        [--input-size 64|128|256]

Needs a crop dataset with identities in its manifest (`facegan crop` of LFW) in $FACEGAN_HOME.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F


def pick_photos(dataset: str, people: int, photos: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`photos` crops each of `people` identities (those with the most photos first), as uint8
    (N, 64, 64, 3) and their integer identity labels."""
    from facegan.tasks.common.paths import resolve_dataset_path
    from facegan.tasks.cropping.dataset import load_dataset

    path = resolve_dataset_path(dataset, 64)[1]
    faces, manifest = load_dataset(path, 64)
    if "identity" not in manifest or manifest["identity"].isna().all():
        raise SystemExit(f"feature_identity: {path} has no identities in its manifest")
    counts = manifest["identity"].value_counts()
    chosen = counts[counts >= photos].index[:people]
    if len(chosen) < 2:
        raise SystemExit(f"feature_identity: fewer than 2 people with {photos} photos in {path}")
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for label, who in enumerate(chosen):
        idx = np.flatnonzero(manifest["identity"].to_numpy() == who)
        rows.extend(rng.choice(idx, photos, replace=False))
        labels.extend([label] * photos)
    return np.asarray(faces[np.asarray(rows)]), np.asarray(labels)


def separation(x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(leave-one-out 1-NN identity accuracy, mean between / mean within cosine distance)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten(1)
    x = x - x.mean(0)
    x = F.normalize(x, dim=1)
    dist = 1 - x @ x.T
    same = torch.as_tensor(labels[:, None] == labels[None, :])
    eye = torch.eye(len(x), dtype=torch.bool)
    nearest = dist.masked_fill(eye, float("inf")).argmin(1).numpy()
    within = dist[same & ~eye].mean().item()
    between = dist[~same].mean().item()
    return float((labels[nearest] == labels).mean()), between / within


@torch.no_grad()
def network_features(images: np.ndarray, pretrained: bool, input_size: int) -> dict[str, np.ndarray]:
    from facegan.models.projected import ProjectedDiscriminator

    torch.manual_seed(0)
    d = ProjectedDiscriminator(64, input_size=input_size, pretrained=pretrained).eval()
    taps = d.taps(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    mixed = d.projection(taps)
    out = {}
    for i, t in enumerate(taps):
        out[f"tap {i + 1} (stride {4 * 2**i}) pooled"] = t.mean((2, 3)).numpy()
        out[f"tap {i + 1} (stride {4 * 2**i}) all positions"] = t.flatten(1).numpy()
    for i, m in enumerate(mixed):
        out[f"mixed {i + 1} (head input {m.shape[-1]} px)"] = m.flatten(1).numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="lfw", help="crop dataset NAME or PATH with identities")
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--photos", type=int, default=10, help="photos per person")
    parser.add_argument(
        "--input-size", type=int, default=64, choices=(64, 128, 256), help="the D's input size (64: native)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    from facegan.evaluation import embeddings, face_lib

    images, labels = pick_photos(args.dataset, args.people, args.photos)
    print(f"{len(images)} crops: {args.people} people x {args.photos} photos, D input {args.input_size} px")
    rows = [("pixels", *separation(images.astype(np.float32), labels))]
    enc = embeddings.encode(images, workers=1)
    face_lib.shutdown()
    rows.append(("face encodings (face_recognition)", *separation(enc, labels)))
    best = {}
    for pretrained in (True, False):
        prefix = "ImageNet" if pretrained else "random init"
        for name, feats in network_features(images, pretrained, args.input_size).items():
            acc, ratio = separation(feats, labels)
            rows.append((f"{prefix} {name}", acc, ratio))
            best[pretrained] = max(best.get(pretrained, 0.0), acc)
    chance = (args.photos - 1) / (len(images) - 1)
    print(f"{'representation':55s} {'nn_identity':>11s} {'between/within':>14s}")
    for name, acc, ratio in rows:
        print(f"{name:55s} {acc:11.3f} {ratio:14.3f}")
    print(f"chance nn_identity: {chance:.3f}")
    print(f"ratio: {best[True] / max(best[False], 1e-9):.2f}")


if __name__ == "__main__":
    main()
