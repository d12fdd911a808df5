"""The Table 1 report: a pandas table (CSV / Markdown / HTML texts), its notes, the metric names
it is logged under, a bar chart, and grids of detected vs not-detected samples. Pure functions:
rows in, table/texts/figures out (files and logging are in tasks/report.py).
"""
from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import torch
from torchvision.utils import make_grid

COLUMNS = ["model", "run", "budget (steps / kimg / CPU-min)", "N", "no face detected", "face detected",
           "detection rate", "relative to real control", "memorised (< real p1)",
           "mean nearest-training distance", "Fréchet distance (face enc.)", "Fréchet noise floor",
           "Fréchet ÷ floor", "precision", "recall", "SWD ×1e3", "SWD ÷ floor"]
INCEPTION_COLUMN = "Inception FID"
REPORT_FILES = ("table1.md", "table1.csv", "table1.html")
# MLflow metric name per Table 1 column, logged as "<row slug>.<name>"
METRIC_COLUMNS = (("detection_rate", "detection rate"), ("relative_detection_rate", "relative to real control"),
                  ("memorised", "memorised (< real p1)"),
                  ("nearest_training_distance", "mean nearest-training distance"),
                  ("frechet", "Fréchet distance (face enc.)"), ("frechet_ratio", "Fréchet ÷ floor"),
                  ("swd", "SWD ×1e3"), ("swd_ratio", "SWD ÷ floor"), ("precision", "precision"),
                  ("recall", "recall"), ("inception_fid", INCEPTION_COLUMN))


def slug(label: str) -> str:
    """'DCGAN (canonical)' -> 'dcgan-canonical': a row's name in MLflow metric and file names."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def metric_values(table: pd.DataFrame) -> dict[str, float]:
    """Every row's numbers as MLflow metrics: {'<row slug>.<metric>': value}."""
    return {f"{slug(r['model'])}.{key}": r[col] for r in table.to_dict("records")
            for key, col in METRIC_COLUMNS if col in r}


def split_counts(info: dict) -> str:
    """'by identity: 12 of 57 identities held out (312 crops), 45 identities with 1245 crops left for training'."""
    unit = {"identity": "identities", "source image": "source images"}.get(info.get("split_by"), "groups")
    return (f"by {info.get('split_by', 'group')}: {info.get('held_out_groups')} of {info.get('groups')} {unit} "
            f"held out ({info['held_out_crops']} crops), {info.get('training_groups')} {unit} with "
            f"{info['crops'] - info['held_out_crops']} crops left for training")


def notes(info: dict, dataset: str, size: int, version_note: str, held_out: float, threshold: float,
          k: int, seed: int) -> list[str]:
    """The report's notes: what the real control is, the split, and how each column is computed."""
    return [f"Real control: {info['n_real']} held-out crops of {dataset} ({size} px); every row "
            f"is compared with {info['n_real']} other held-out crops (reference set).",
            version_note,
            f"Held-out split: {split_counts(info)}, fraction {held_out}; memorisation "
            f"distances go to the {info['training_crops']} non-held-out (training) crops.",
            f"Memorised: share of images closer to their nearest training face (128-d "
            f"face_recognition encoding) than {threshold:.4f}, the 1st percentile of the real "
            f"control's nearest-training distances.",
            "Fréchet noise floor: the same distance between the real control and the "
            f"disjoint real reference set. Precision/recall: k-NN manifolds, k={k}.",
            "SWD: multi-scale sliced Wasserstein distance (Karras et al. 2018; 7x7 patches of a "
            "Laplacian pyramid down to 16 px) to the same reference set, x 1e3; the real "
            "control's SWD is its noise floor. Budget: generator steps / thousands of real "
            "images shown to D / CPU-minutes of training.",
            f"Generated with seed {seed} (EMA generator when the run kept one)."]


def budget_text(meta: dict) -> str:
    """A row's training budget: '6250 / 400.0 / 152.3' (steps / kimg / CPU-minutes)."""
    if meta.get("step") is None:
        return ""
    parts = [str(meta["step"])]
    for key in ("kimg", "cpu_minutes"):
        value = meta.get(key)
        parts.append("?" if value is None else f"{value:.1f}" if value >= 1 else f"{value:.3f}")
    return " / ".join(parts)


def build_table(rows: list[dict], control: dict, noise_floor: float) -> pd.DataFrame:
    """rows/control: dicts with label, run, n, detected, memorised, nearest_mean, frechet,
    precision, recall, optionally budget (text) and swd (the control last: its swd is the SWD
    noise floor). Returns the Table 1 DataFrame (one row per entry)."""
    control_rate = control["detected"] / control["n"]
    swd_floor = control.get("swd")
    records = []
    for r in [*rows, control]:
        rate = r["detected"] / r["n"]
        swd = r.get("swd")
        records.append({
            "model": r["label"], "run": r.get("run") or "", "budget (steps / kimg / CPU-min)": r.get("budget", ""),
            "N": r["n"],
            "no face detected": f"{r['n'] - r['detected']}/{r['n']}",
            "face detected": f"{r['detected']}/{r['n']}",
            "detection rate": round(rate, 4),
            "relative to real control": round(rate / control_rate, 4) if control_rate else float("nan"),
            "memorised (< real p1)": round(r["memorised"], 4),
            "mean nearest-training distance": round(r["nearest_mean"], 4),
            "Fréchet distance (face enc.)": round(r["frechet"], 4),
            "Fréchet noise floor": round(noise_floor, 4),
            "Fréchet ÷ floor": round(r["frechet"] / noise_floor, 2) if noise_floor else float("nan"),
            "precision": round(r["precision"], 4), "recall": round(r["recall"], 4),
            "SWD ×1e3": round(swd, 2) if swd is not None else float("nan"),
            "SWD ÷ floor": round(swd / swd_floor, 2) if swd is not None and swd_floor else float("nan"),
        })
        if "inception_fid" in r:
            records[-1][INCEPTION_COLUMN] = round(r["inception_fid"], 3)
    extra = [INCEPTION_COLUMN] if INCEPTION_COLUMN in records[0] else []
    return pd.DataFrame.from_records(records, columns=COLUMNS + extra)


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown (no tabulate dependency)."""
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(table[c]) else "---"
                          for c in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def documents(table: pd.DataFrame, protocol: str, notes: list[str]) -> dict[str, str]:
    """The report files' texts, by name (REPORT_FILES): Markdown, CSV and HTML; the Markdown and
    HTML carry the protocol and the notes."""
    items = [f"Detection protocol: {protocol}.", *notes]
    csv = io.StringIO()
    table.to_csv(csv, index=False)
    text = "\n".join(f"- {n}" for n in items)
    html = ("<!doctype html><meta charset='utf-8'><title>facegan Table 1</title>"
            "<h1>Table 1: face_recognition on generated faces</h1>" + table.to_html(index=False, border=0)
            + "<ul>" + "".join(f"<li>{n}</li>" for n in items) + "</ul>\n")
    texts = {"table1.md": f"# Table 1: face_recognition on generated faces\n\n{to_markdown(table)}\n{text}\n",
             "table1.csv": csv.getvalue(), "table1.html": html}
    return {name: texts[name] for name in REPORT_FILES}


def bar_chart(table: pd.DataFrame):
    """Detection rate (with the real control's as a line) and Fréchet distance (with its noise
    floor) per row, as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels = table["model"].tolist()
    colors = ["#888888" if i == len(labels) - 1 else "#3b75af" for i in range(len(labels))]
    ax1.bar(labels, table["detection rate"], color=colors)
    ax1.axhline(table["detection rate"].iloc[-1], color="k", ls="--", lw=1, label="real control")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("face detected (share)")
    ax1.set_title("face_recognition detection rate")
    for i, v in enumerate(table["detection rate"]):
        ax1.text(i, min(v + 0.02, 1.0), f"{v:.3f}", ha="center", fontsize=8)
    ax2.bar(labels, table["Fréchet distance (face enc.)"], color=colors)
    ax2.axhline(table["Fréchet noise floor"].iloc[0], color="k", ls="--", lw=1, label="noise floor")
    ax2.set_ylabel("Fréchet distance")
    ax2.set_title("Fréchet distance on face encodings")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def sample_grid(images: np.ndarray, n: int = 32, nrow: int = 8) -> np.ndarray:
    """A uint8 grid (H, W, 3) of the first n images (a blank tile when there are none)."""
    if len(images) == 0:
        return np.full((8, 8, 3), 255, np.uint8)
    tensor = torch.from_numpy(np.ascontiguousarray(images[:n])).permute(0, 3, 1, 2)
    grid = make_grid(tensor, nrow=min(nrow, len(tensor)), padding=2, pad_value=255)
    return grid.permute(1, 2, 0).numpy().copy()


def detection_grids(images: np.ndarray, detected: np.ndarray, n: int = 32) -> dict[str, np.ndarray]:
    """{'detected': grid, 'not_detected': grid} of up to n samples each, in sample order."""
    return {"detected": sample_grid(images[detected], n), "not_detected": sample_grid(images[~detected], n)}


def detection_figure(rows: list[tuple[str, np.ndarray, np.ndarray]], n: int = 32):
    """One figure: for each (label, images, detected) a 'detected' and a 'not detected' grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 2.9 * len(rows)), squeeze=False)
    for (label, images, detected), (left, right) in zip(rows, axes):
        grids = detection_grids(images, detected, n)
        for ax, key, title in ((left, "detected", "face detected"), (right, "not_detected", "no face detected")):
            ax.imshow(grids[key])
            count = int(detected.sum()) if key == "detected" else int((~detected).sum())
            ax.set_title(f"{label}: {title} ({count}/{len(detected)})", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
