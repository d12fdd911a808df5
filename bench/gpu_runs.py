"""Train facegan recipes on a lent GPU box and score them back here.

The GPU machines lent to this project have torch and CUDA but no package index, no tracking
store, and room for 64 MiB in and 64 MiB out per call: neither face_recognition's 100 MB model
file nor the 109 MB LFW archive fits. So the box trains with facegan's own loop
(tasks/training/loop.train_loop, a local JSON-lines sink in place of the MLflow run) on a crop
dataset carried as JPEGs, and every kept checkpoint is exported as

- the N = 256 curve sample CurveScorer would have scored at that step (the same noise,
  seed + 2), one lossless WebP grid: `curve-<run>-<step>.webp`, and
- at chosen kimg, the EMA generator as an fp16 generator file that `facegan evaluate --run FILE`
  reads: `gen-<run>-<step>.pt`.

    here:   bench/gpu_runs.py pack-faces $FACEGAN_HOME/datasets/lfw-deepfunneled/64 .gpu/lfw-64.npz
    there:  bench/gpu_runs.py train --faces .gpu/lfw-64.npz --out /tmp/g --name g-pgf --kimg 400 \
                --set model=projected-fastgan
            bench/gpu_runs.py export --out /tmp/g --weights-at g-pgf=100,400
            bench/gpu_runs.py bundle --out /tmp/g --to $OUT
    here:   bench/gpu_runs.py score --dir BUNDLES --dataset $FACEGAN_HOME/datasets/lfw-deepfunneled/64

The JPEG round trip changes the pixels a little (quality 90, no chroma subsampling at 64 px), so
the generators carry that dataset's fingerprint and `facegan evaluate` needs
--allow-changed-dataset for them (the report flags it).
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
import time
from pathlib import Path

import numpy as np
from gpu_faces import pack_faces, unpack_faces  # bench/ is on sys.path for a script
from PIL import Image

GRID = 16  # 16 x 16 = 256 faces per curve grid
CURVE_N = GRID * GRID
# the curve's kimg: every 20 to 200, then sparser (each grid is ~1.5 MiB at 64 px, 4 at 128)
COARSE = (20, 60, 100, 200, 300, 400, 600, 800, 1000, 1400, 2000)
CURVE_AT = [*range(20, 201, 20), *range(240, 401, 40), *range(500, 1001, 100), *range(1200, 4001, 200)]


class LocalRun:
    """The training loop's run handle, writing metrics and tags as JSON lines beside the run."""

    def __init__(self, folder: Path):
        self.path = folder / "metrics.jsonl"
        folder.mkdir(parents=True, exist_ok=True)

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"wall": time.time(), **record}) + "\n")

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self._write({"step": step or 0, **{k: float(v) for k, v in metrics.items() if v is not None}})

    def set_tags(self, tags: dict) -> None:
        self._write({"tags": {k: str(v) for k, v in tags.items()}})

    def last_step(self, key: str) -> int:
        return max((r["step"] for r in read_jsonl(self.path) if key in r), default=0)

    def log_artifact(self, path, artifact_path=None) -> None:  # the files stay in the run folder
        pass


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def train(args) -> None:
    import torch

    from facegan.config.train import TrainConfig
    from facegan.tasks.training.data import dataset_fingerprint
    from facegan.tasks.training.loop import train_loop

    dataset = args.out / "datasets" / args.dataset / str(args.size)
    source = unpack_faces(args.faces, dataset)
    fields = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}
    # batch 64 unless --set says otherwise: a GPU is fed far below its throughput at the default
    # recipe's batch 8, and bundle() orders grids by kimg = step x 0.064. The DCGAN default recipe's
    # CPU choices (32 maps, lr 4e-4, beta1 0, mode-seeking 0.25) were measured at batch 8 only: at 64
    # its GPU runs keep the batch-64 recipe (64 maps, 2e-4, beta1 0.5, no mode-seeking)
    fields.setdefault("batch_size", 64)
    if fields.get("model", "dcgan") == "dcgan" and fields.get("recipe", "default") == "default":
        for key, value in dict(features=64, lr=2e-4, beta1=0.5, mode_seeking=0.0).items():
            fields.setdefault(key, value)
    cfg = TrainConfig(
        dataset=args.dataset,
        size=args.size,
        kimg=args.kimg,
        name=args.name,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=10_000,
        sample_every=args.checkpoint_every,
        score_every=0,
        register_model=False,
        **fields,
    )
    meta = {
        "model": cfg.model,
        "size": cfg.size,
        "z_dim": cfg.z_dim,
        "features": cfg.features,
        "dataset": args.dataset,
        "dataset_path": str(dataset),
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "source_fingerprint": source,
        "run_name": args.name,
        "run_id": f"gpu:{args.name}",
        "trained_on": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    run_dir = args.out / "runs" / args.name
    run = LocalRun(run_dir)
    run.set_tags({"config": json.dumps(cfg.model_dump(mode="json"))})
    summary = train_loop(cfg, dataset, run_dir, meta, run)
    print(f"{args.name}: step {summary.step}, {summary.batches * cfg.batch_size / 1000:.1f} kimg")


def wall_at(run_dir: Path, step: int) -> float | None:
    """Seconds from the run's first record to the first record at or after `step`."""
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "step" in r]
    if not records:
        return None
    later = [r["wall"] for r in records if r["step"] >= step]
    return (later[0] if later else records[-1]["wall"]) - records[0]["wall"]


def export(args) -> None:
    import torch

    from facegan.tasks.training import checkpoints as ckpt
    from facegan.tasks.training.trained_generators import generator_payload, load_generator, sample_images

    device = "cuda" if torch.cuda.is_available() else "cpu"
    weights_at = {}
    for spec in args.weights_at:
        name, points = spec.split("=")
        weights_at[name] = [float(p) for p in points.split(",")]
    dest = args.out / "export"
    dest.mkdir(parents=True, exist_ok=True)
    for run_dir in sorted((args.out / "runs").iterdir()):
        name = run_dir.name
        found = ckpt.step_checkpoints(run_dir / "checkpoints")
        index = dest / f"index-{name}.jsonl"
        done = {r["step"] for r in read_jsonl(index)}
        tags = [r["tags"] for r in read_jsonl(run_dir / "metrics.jsonl") if "config" in r.get("tags", {})]
        seed = json.loads(tags[0]["config"])["seed"] if tags else 0
        for step, path in found:
            if step in done:
                continue
            G, meta = load_generator(str(path), device)  # the EMA weights; meta has the budget and "ema"
            budget = {k: meta[k] for k in ("step", "kimg", "cpu_minutes", "recipe")}
            images = sample_images(G, meta, CURVE_N, seed=seed + 2)  # the curve scorer's noise
            size = meta["size"]
            grid = (
                images.reshape(GRID, GRID, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(GRID * size, GRID * size, 3)
            )
            if any(abs(budget["kimg"] - k) < args.weights_window for k in args.curve_at):
                tmp = dest / f"curve-{name}-{step:06d}.tmp"
                Image.fromarray(grid).save(tmp, "WEBP", lossless=True, quality=100, method=4)
                tmp.replace(dest / f"curve-{name}-{step:06d}.webp")
            if any(abs(budget["kimg"] - k) < args.weights_window for k in weights_at.get(name, [])):
                state = {k: v.half() if v.is_floating_point() else v for k, v in G.state_dict().items()}
                torch.save(generator_payload(state, meta), dest / f"gen-{name}-{step:06d}.tmp")
                (dest / f"gen-{name}-{step:06d}.tmp").replace(dest / f"gen-{name}-{step:06d}.pt")
            record = {"run": name, "step": step, **budget, "wall_s": wall_at(run_dir, step)}
            with open(index, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            print(f"exported {name} step {step} ({budget['kimg']:.1f} kimg)", flush=True)


def bundle(args) -> None:
    """Pack exported files not sent before into at most 8 tar files of at most 15 MiB under --to,
    at most --limit-mb in all: run logs and indexes first, then generator files, then curve grids
    in kimg order, the COARSE points of every run before the others (batch 64: kimg = step x 0.064)."""
    dest, sent_path = args.out / "export", args.out / "sent.txt"
    sent = set(sent_path.read_text().split()) if sent_path.is_file() else set()

    def order(p: Path) -> tuple:
        step = int(re.search(r"-(\d{6})\.", p.name).group(1))
        coarse = any(abs(step * 0.064 - k) < 10 for k in COARSE)
        return (0 if p.name.startswith("gen-") else 1, 0 if coarse else 1, step, p.name)

    todo = sorted((p for p in dest.glob("*-*.*") if p.name not in sent and p.suffix in (".webp", ".pt")), key=order)
    logs = list(dest.glob("index-*.jsonl")) + list((args.out / "runs").glob("*/metrics.jsonl"))
    limit, part, parts, total = args.limit_mb * 2**20, 15 * 2**20, [], 0
    chosen = []
    for p in todo:
        size = p.stat().st_size
        if total + size > limit - 2**20 or size > part:
            continue
        chosen.append(p)
        total += size
    args.to.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    current, current_size = [], 0
    for p in chosen:
        if current and current_size + p.stat().st_size > part:
            parts.append(current)
            current, current_size = [], 0
        current.append(p)
        current_size += p.stat().st_size
    if current:
        parts.append(current)
    for i, files in enumerate(parts[:7]):
        with tarfile.open(args.to / f"gpu-{stamp}-{i}.tar", "w") as tar:
            for p in files:
                tar.add(p, arcname=p.name)
    with tarfile.open(args.to / f"gpu-{stamp}-logs.tar.gz", "w:gz") as tar:
        for p in logs:
            tar.add(p, arcname=f"{p.parent.name}-{p.name}" if p.name == "metrics.jsonl" else p.name)
    sent.update(p.name for files in parts[:7] for p in files)
    sent_path.write_text("\n".join(sorted(sent)) + "\n")
    left = len(todo) - sum(len(f) for f in parts[:7])
    print(f"bundled {sum(len(f) for f in parts[:7])} files, {total / 2**20:.1f} MiB; {left} left for the next call")


def score(args) -> None:
    """Score every curve grid found in the bundles under --dir as CurveScorer would, as CSV."""
    import pandas as pd

    from facegan.tasks.training.samples import CurveScorer

    folder = args.dir / "unpacked"
    folder.mkdir(exist_ok=True)
    for tar in sorted(args.dir.glob("gpu-*.tar*")):
        with tarfile.open(tar) as t:
            t.extractall(folder, filter="data")
    index = {(r["run"], r["step"]): r for p in folder.glob("index-*.jsonl") for r in read_jsonl(p)}
    scorer = CurveScorer(1, CURVE_N, args.seed, args.dataset, args.size)
    if not scorer.prepare():
        raise SystemExit("error: face_recognition is not available here")
    rows = []
    for grid_path in sorted(folder.glob("curve-*.webp")):
        run, step = re.match(r"curve-(.+)-(\d{6})\.webp$", grid_path.name).groups()
        grid = np.asarray(Image.open(grid_path).convert("RGB"))
        s = grid.shape[0] // GRID
        if s != args.size:
            continue
        images = grid.reshape(GRID, s, GRID, s, 3).transpose(0, 2, 1, 3, 4).reshape(CURVE_N, s, s, 3)
        info = index.get((run, int(step)), {})
        rows.append(
            {
                "run": run,
                "step": int(step),
                "kimg": info.get("kimg"),
                "wall_s": info.get("wall_s"),
                **scorer.score_images(images),
            }
        )
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).sort_values(["run", "step"])
    frame.to_csv(args.csv, index=False)
    print(f"wrote {args.csv} ({len(frame)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack-faces")
    p.add_argument("dataset", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--subsampling", type=int, default=0, help="0: 4:4:4, 2: 4:2:0")
    p = sub.add_parser("train")
    p.add_argument("--faces", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--dataset", default="lfw-deepfunneled")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--kimg", type=float, required=True)
    p.add_argument("--checkpoint-every", type=int, default=313)
    p.add_argument("--set", action="append", default=[], help="a TrainConfig field, e.g. model=projected-fastgan")
    p = sub.add_parser("export")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights-at", nargs="*", default=[], help="RUN=KIMG,KIMG: generator files at these kimg")
    p.add_argument(
        "--curve-at", type=lambda t: [float(k) for k in t.split(",")], default=CURVE_AT, help="kimg of the curve grids"
    )
    p.add_argument("--weights-window", type=float, default=10.0, help="kimg either side of a --weights-at point")
    p = sub.add_parser("bundle")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--to", type=Path, required=True)
    p.add_argument("--limit-mb", type=int, default=60)
    p = sub.add_parser("score")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", type=Path, default=Path("gpu-curves.csv"))
    args = parser.parse_args()
    {
        "pack-faces": lambda: pack_faces(args.dataset, args.out, args.quality, args.subsampling),
        "train": lambda: train(args),
        "export": lambda: export(args),
        "bundle": lambda: bundle(args),
        "score": lambda: score(args),
    }[args.command]()


if __name__ == "__main__":
    main()
