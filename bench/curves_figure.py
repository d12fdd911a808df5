"""Realism curves of several runs side by side, against kimg and against CPU-minutes.

Each curve is either an MLflow training run (`--run LABEL=RUN_ID`, read from FACEGAN_HOME's
tracking store: the N = 256 scores logged every --score-every steps with their kimg and
cpu_minutes) or a CSV (`--table LABEL=FILE` with columns kimg, cpu_minutes, detection_rate,
frechet_ratio, precision, recall: curves whose MLflow store is on another machine, copied from
the docs' tables; an empty cpu_minutes column for GPU runs). Writes one figure (top row against
kimg, bottom row against CPU-minutes, left out when no curve has CPU-minutes) and
prints the merged table as Markdown. CPU-minutes compare only within one machine: the figure's
title should say which.

    FACEGAN_HOME=... .venv/bin/python bench/curves_figure.py docs/img/curves.png \
        --run "projected-fastgan (AMD)=<run id>" \
        --table "DCGAN default (Xeon)=docs/results/curves/dcgan-default-64-xeon.csv"
"""

from __future__ import annotations

import argparse

import pandas as pd

COLUMNS = ("kimg", "cpu_minutes", "detection_rate", "frechet_ratio", "precision", "recall")
PANELS = (("detection_rate", "detection rate"), ("frechet_ratio", "Fréchet ÷ N = 256 floor"), ("recall", "recall"))


def run_curve(run_id: str) -> pd.DataFrame:
    """The curve metrics of one MLflow run, one row per scored step."""
    import numpy as np

    from facegan.tasks.common import tracking

    by_key = {key: {m.step: m.value for m in tracking.metric_history(run_id, key)} for key in COLUMNS}
    steps = sorted(by_key["detection_rate"])
    if not steps:
        raise SystemExit(f"error: run {run_id} has no curve scores (was it trained with --score-every?)")
    frame = pd.DataFrame([{key: by_key[key].get(step) for key in COLUMNS} for step in steps], dtype=float)
    logged = sorted(by_key["cpu_minutes"].items())  # every --log-every steps: interpolated at the scored ones
    if logged:
        frame["cpu_minutes"] = np.interp(steps, *zip(*logged))
    return frame


def table_curve(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SystemExit(f"error: {path} lacks the columns {', '.join(missing)}")
    return frame[list(COLUMNS)]


def figure(curves: dict[str, pd.DataFrame], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = any(frame["cpu_minutes"].notna().any() for frame in curves.values())
    xs = ("kimg", "cpu_minutes") if timed else ("kimg",)  # GPU curves: no CPU-minute row
    fig, axes = plt.subplots(len(xs), len(PANELS), figsize=(15, 4 * len(xs)), squeeze=False)
    for row, x in enumerate(xs):
        for ax, (key, label) in zip(axes[row], PANELS):
            for name, frame in curves.items():
                points = frame[[x, key]].dropna()
                ax.plot(points[x], points[key], marker="o", ms=3, label=name)
            ax.set_xlabel("kimg (thousands of real images shown to D)" if x == "kimg" else "CPU-minutes of training")
            ax.set_title(label)
            ax.grid(alpha=0.3)
            if key == "frechet_ratio":
                ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--run", action="append", default=[], help="LABEL=MLFLOW_RUN_ID (repeatable)")
    parser.add_argument("--table", action="append", default=[], help="LABEL=CSV (repeatable)")
    parser.add_argument("--title", default="realism curves (N = 256 per point)")
    parser.add_argument("--max-kimg", type=float, help="leave out the points past this many kimg")
    args = parser.parse_args()
    curves: dict[str, pd.DataFrame] = {}
    for spec, load in [(s, run_curve) for s in args.run] + [(s, table_curve) for s in args.table]:
        label, sep, source = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: expected LABEL=SOURCE, got {spec!r}")
        curve = load(source)
        curves[label] = curve if args.max_kimg is None else curve[curve["kimg"] <= args.max_kimg + 1e-6]
    if not curves:
        raise SystemExit("error: give at least one --run or --table")
    fig = figure(curves, args.title)
    fig.savefig(args.out, dpi=90)
    merged = pd.concat(curves, names=["curve", "point"]).reset_index(level="point", drop=True).round(3)
    print(merged.to_markdown())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
