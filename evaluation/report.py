"""The Table 1 report: a pandas table (CSV / Markdown / HTML texts), its notes and the metric names
it is logged under (its bar chart and sample grids: evaluation/figures.py). Pure functions: rows
in, table and texts out (files and logging are in tasks/evaluating/report.py).

The face-space columns (memorised ... encoding spread) rest on a row's detected faces only
("face-space N"); below facegan.evaluation.metrics.MIN_FACES they are NaN in the table, "—" in the
Markdown, CSV and HTML texts, and the "face-space note" column says why.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from facegan.config.evaluate import EvaluateConfig

MISSING = "—"  # a number not computed (too few detected faces, no reference images, ...)
TITLE = "Table 1: face_recognition on generated faces"
FACES_COLUMN, NOTE_COLUMN = "face-space N", "face-space note"
COLUMNS = [
    "model",
    "run",
    "budget (steps / kimg / CPU-min)",
    "N",
    "no face detected",
    "face detected",
    "detection rate",
    "relative to real control",
    FACES_COLUMN,
    "memorised (< real p1)",
    "mean nearest-training distance",
    "Fréchet distance (face enc.)",
    "Fréchet noise floor",
    "Fréchet ÷ floor",
    "precision",
    "recall",
    "encoding spread",
    "SWD ×1e3",
    "SWD ÷ floor",
    NOTE_COLUMN,
]
INCEPTION_COLUMN = "Inception FID"
REPORT_FILES = ("table1.md", "table1.csv", "table1.html")
# MLflow metric name per Table 1 column, logged as "<row slug>.<name>"
METRIC_COLUMNS = (
    ("detection_rate", "detection rate"),
    ("relative_detection_rate", "relative to real control"),
    ("memorised", "memorised (< real p1)"),
    ("nearest_training_distance", "mean nearest-training distance"),
    ("frechet", "Fréchet distance (face enc.)"),
    ("frechet_ratio", "Fréchet ÷ floor"),
    ("swd", "SWD ×1e3"),
    ("swd_ratio", "SWD ÷ floor"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("face_space_n", FACES_COLUMN),
    ("encoding_spread", "encoding spread"),
    ("inception_fid", INCEPTION_COLUMN),
)


def slug(label: str) -> str:
    """'DCGAN (canonical)' -> 'dcgan-canonical': a row's name in MLflow metric and file names."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def metric_values(table: pd.DataFrame) -> dict[str, float]:
    """Every row's numbers as MLflow metrics: {'<row slug>.<metric>': value}; a number not
    computed (NaN, "—" in the report) is not logged."""
    return {
        f"{slug(r['model'])}.{key}": float(r[col])
        for r in table.to_dict("records")
        for key, col in METRIC_COLUMNS
        if col in r and pd.notna(r[col])
    }


def title(dataset: str | None = None, size: int | None = None) -> str:
    """'Table 1: face_recognition on generated faces — lfw, 64 px' (one report per image size)."""
    where = ", ".join(x for x in (dataset, f"{size} px" if size else None) if x)
    return f"{TITLE} — {where}" if where else TITLE


def split_counts(info: dict) -> str:
    """'by identity: 12 of 57 identities held out (312 crops), 45 identities with 1245 crops left for training'."""
    unit = {"identity": "identities", "source image": "source images"}.get(info.get("split_by"), "groups")
    return (
        f"by {info.get('split_by', 'group')}: {info.get('held_out_groups')} of {info.get('groups')} {unit} "
        f"held out ({info['held_out_crops']} crops), {info.get('training_groups')} {unit} with "
        f"{info['crops'] - info['held_out_crops']} crops left for training"
    )


def notes(
    info: dict, where: tuple[str, int], version_note: str, config: EvaluateConfig, numbers: dict, face_counts: dict
) -> list[str]:
    """The report's notes: what the real control is, the split, and how each column is computed.
    `where` is (dataset, size); `numbers` holds the memorisation threshold and the face minimum;
    `face_counts` the detected faces of each real set."""
    dataset, size = where
    threshold, min_faces, counts = numbers["memorisation_threshold"], numbers["min_faces"], face_counts
    named = ", ".join(f"{name} {count}" for name, count in counts.items())
    memo = (
        f"than {threshold:.4f}, the 1st percentile of the real control's detected faces' nearest-training distances."
        if np.isfinite(threshold)
        else "than the 1st percentile of the real control's nearest-training distances (not computed: "
        "too few detected faces)."
    )
    return [
        f"Face-space columns (memorised, nearest-training distance, Fréchet, precision, recall, "
        f"encoding spread) are computed over detected faces only, generated and real rows alike "
        f"(the real sets too{': ' + named + ' detected' if named else ''}); '{FACES_COLUMN}' is how "
        f"many faces a row's numbers rest on. Below {min_faces} detected faces a number is shown "
        f"as {MISSING} and '{NOTE_COLUMN}' says why.",
        "Encoding spread: mean pairwise distance of the row's detected-face encodings divided by "
        "that of the real reference set's (diversity: ~1 for real faces, ~0 for one face repeated, "
        "well below 1 for a collapsed generator).",
        f"Real control: {info['n_real']} held-out crops of {dataset} ({size} px); every row "
        f"is compared with {info['n_real']} other held-out crops (reference set).",
        version_note,
        f"Held-out split: {split_counts(info)}, fraction {config.held_out}; memorisation "
        f"distances go to the {info['training_crops']} non-held-out (training) crops.",
        f"Memorised: share of detected faces closer to their nearest (detected) training face "
        f"(128-d face_recognition encoding) {memo}",
        "Fréchet noise floor: the same distance between the real control and the "
        f"disjoint real reference set. Precision/recall: k-NN manifolds, k={config.k}.",
        "SWD: multi-scale sliced Wasserstein distance (Karras et al. 2018; 7x7 patches of a "
        "Laplacian pyramid down to 16 px) to the same reference set, x 1e3; the real "
        "control's SWD is its noise floor. Budget: generator steps / thousands of real "
        "images shown to D / CPU-minutes of training.",
        f"Generated with seed {config.seed} (EMA generator when the run kept one).",
    ]


def budget_text(meta: dict) -> str:
    """A row's training budget: '6250 / 400.0 / 152.3' (steps / kimg / CPU-minutes)."""
    if meta.get("step") is None:
        return ""
    parts = [str(meta["step"])]
    for key in ("kimg", "cpu_minutes"):
        value = meta.get(key)
        parts.append("?" if value is None else f"{value:.1f}" if value >= 1 else f"{value:.3f}")
    return " / ".join(parts)


def _round(value, digits: int) -> float:
    return float("nan") if value is None or not np.isfinite(value) else round(float(value), digits)


def _ratio(value, floor, digits: int = 2) -> float:
    if value is None or floor is None or not np.isfinite(value) or not np.isfinite(floor) or not floor:
        return float("nan")
    return round(float(value) / float(floor), digits)


def build_table(rows: list[dict], control: dict, noise_floor: float) -> pd.DataFrame:
    """rows/control: dicts with label, run, n, detected, faces (detected faces the face-space
    numbers rest on), memorised, nearest_mean, frechet, precision, recall, spread (NaN: not
    computed), note (why), optionally budget (text) and swd (the control last: its swd is the SWD
    noise floor). Returns the Table 1 DataFrame (one row per entry; NaN where not computed)."""
    control_rate = control["detected"] / control["n"]
    swd_floor = control.get("swd")
    records = []
    for r in [*rows, control]:
        rate = r["detected"] / r["n"]
        swd = r.get("swd")
        frechet = r.get("frechet", float("nan"))
        records.append(
            {
                "model": r["label"],
                "run": r.get("run") or "",
                "budget (steps / kimg / CPU-min)": r.get("budget", ""),
                "N": r["n"],
                "no face detected": f"{r['n'] - r['detected']}/{r['n']}",
                "face detected": f"{r['detected']}/{r['n']}",
                "detection rate": round(rate, 4),
                "relative to real control": round(rate / control_rate, 4) if control_rate else float("nan"),
                FACES_COLUMN: int(r.get("faces", r["detected"])),
                "memorised (< real p1)": _round(r.get("memorised"), 4),
                "mean nearest-training distance": _round(r.get("nearest_mean"), 4),
                "Fréchet distance (face enc.)": _round(frechet, 4),
                "Fréchet noise floor": _round(noise_floor, 4),
                "Fréchet ÷ floor": _ratio(frechet, noise_floor),
                "precision": _round(r.get("precision"), 4),
                "recall": _round(r.get("recall"), 4),
                "encoding spread": _round(r.get("spread"), 4),
                "SWD ×1e3": _round(swd, 2),
                "SWD ÷ floor": _ratio(swd, swd_floor),
                NOTE_COLUMN: r.get("note", ""),
            }
        )
        if "inception_fid" in r:
            records[-1][INCEPTION_COLUMN] = round(r["inception_fid"], 3)
    extra = [INCEPTION_COLUMN] if INCEPTION_COLUMN in records[0] else []
    return pd.DataFrame.from_records(records, columns=COLUMNS + extra)


def _cell(value) -> str:
    """A Markdown cell: a float with 4 decimals, or MISSING when not computed."""
    if isinstance(value, float):
        return MISSING if not np.isfinite(value) else f"{value:.4f}"
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown, the cells formatted here and written as they are (unpadded)."""
    return table.map(_cell).to_markdown(index=False, disable_numparse=True, stralign=None, numalign=None) + "\n"


def documents(table: pd.DataFrame, protocol: str, notes: list[str], heading: str = TITLE) -> dict[str, str]:
    """The report files' texts, by name (REPORT_FILES): Markdown, CSV and HTML; the Markdown and
    HTML carry the heading (title(dataset, size): two sizes' reports are told apart), the
    protocol and the notes. Numbers not computed are written as MISSING ("—")."""
    from html import escape

    items = [f"Detection protocol: {protocol}.", *notes]
    csv = io.StringIO()
    table.to_csv(csv, index=False, na_rep=MISSING)
    text = "\n".join(f"- {n}" for n in items)
    html = (
        f"<!doctype html><meta charset='utf-8'><title>facegan {escape(heading.split(':')[0])}</title>"
        f"<h1>{escape(heading)}</h1>"
        + table.to_html(index=False, border=0, na_rep=MISSING)
        + "<ul>"
        + "".join(f"<li>{escape(n)}</li>" for n in items)
        + "</ul>\n"
    )
    texts = {
        "table1.md": f"# {heading}\n\n{to_markdown(table)}\n{text}\n",
        "table1.csv": csv.getvalue(),
        "table1.html": html,
    }
    return {name: texts[name] for name in REPORT_FILES}
