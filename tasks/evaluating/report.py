"""The evaluate stage's report steps, as plain functions (flows/evaluate.py only wires them):
which dataset the runs share, whether it is the version they trained on, Table 1 from the scored
sets, and the report's files, figures, metrics and artifacts.

Report files: FACEGAN_HOME/evaluations/<evaluate run id>/table1.{md,csv,html} (atomic writes),
also logged to that MLflow run under report/, with grids/ and, with --keep-pngs, samples/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegan.config.errors import InputError
from facegan.config.evaluate import EvaluateConfig
from facegan.evaluation import detection, figures, metrics, report
from facegan.evaluation.real_sets import RealSets
from facegan.tasks.common.atomic import write_text
from facegan.tasks.evaluating.scoring import (
    Scored,
    dataset_path_of,
    evaluations_root,
    resolve_dataset_arg,
    row_metrics,
    save_pngs,
)


def row_source(meta: dict) -> str | None:
    """What a report row evaluated: models:/name/version for a registered model, else the run id
    (or the checkpoint given)."""
    return meta.get("model_uri") or meta.get("run_id") or meta.get("ref")


def common_dataset(config: EvaluateConfig, metas: list[dict]) -> tuple[Path, int]:
    """The one crop dataset (folder) and image size the runs share, or --dataset at that size."""
    sizes = {m["size"] for m in metas}
    if len(sizes) > 1:
        raise InputError(
            f"the runs have different image sizes ({', '.join(map(str, sorted(sizes)))}): evaluate one size at a time"
        )
    size = sizes.pop()
    if config.dataset:
        return resolve_dataset_arg(config.dataset, size), size
    paths = {str(dataset_path_of(m)) for m in metas}
    if len(paths) > 1:
        raise InputError(
            f"the runs were trained on different datasets ({', '.join(sorted(paths))}): "
            "Table 1 compares models on one dataset (or pass --dataset)"
        )
    return dataset_path_of(metas[0]), size


def check_dataset_version(config: EvaluateConfig, metas: list[dict], path: Path) -> dict:
    """The real control must come from the dataset version the runs trained on (their recorded
    dataset_fingerprint). A changed dataset is refused unless --allow-changed-dataset, which
    flags it in the report. Returns the params/notes describing the check."""
    from facegan.tasks.training.data import dataset_fingerprint

    current = dataset_fingerprint(path)
    changed = [m for m in metas if m.get("dataset_fingerprint") and m["dataset_fingerprint"] != current]
    unknown = [m for m in metas if not m.get("dataset_fingerprint")]
    if changed and not config.allow_changed_dataset:
        m = changed[0]
        raise InputError(
            f"run {row_source(m)} was trained on another version of {path} (fingerprint "
            f"{m['dataset_fingerprint']}, now {current}: re-cropped since), so its real control "
            "would not be the data it learned from; pass --dataset with the version it trained "
            "on, or --allow-changed-dataset to score anyway (flagged in the report)"
        )
    note = f"Real control drawn from dataset version {current}"
    if changed:
        note += (
            " — NOT the version "
            + ", ".join(sorted({f"{m['dataset_fingerprint']} ({row_source(m)})" for m in changed}))
            + " the runs trained on (--allow-changed-dataset)"
        )
    elif unknown:
        note += (
            " — the version "
            + ", ".join(str(row_source(m)) for m in unknown)
            + " trained on is unknown (trained before facegan recorded it)"
        )
    else:
        note += ", the version every run trained on"
    return {
        "params": {
            "dataset_fingerprint": current,
            "dataset_changed": bool(changed),
            "dataset_version_unknown": bool(unknown),
        },
        "note": note + ".",
    }


def dataset_label(metas: list[dict], path: Path) -> str:
    return metas[0].get("dataset") or path.parent.name


@dataclass(frozen=True)
class Subject:
    """What one evaluation compares: the runs (their checkpoint metas), the crop dataset they share
    at one image size, and the dataset-version check (its params and its note for the report)."""

    metas: list[dict]
    path: Path
    size: int
    version: dict

    @property
    def dataset(self) -> str:
        return dataset_label(self.metas, self.path)


def subject_of(config: EvaluateConfig, metas: list[dict]) -> Subject:
    """The runs' common dataset and size, checked against the version they trained on (before any
    MLflow run is opened: a refused dataset leaves nothing behind)."""
    path, size = common_dataset(config, metas)
    return Subject(metas, path, size, check_dataset_version(config, metas, path))


def run_params(config: EvaluateConfig, subject: Subject, real: RealSets) -> dict:
    """The evaluate run's MLflow params."""
    return {
        **config.model_dump(exclude={"parent_run_id", "run"}, mode="json"),
        "runs": config.run,
        "protocol": detection.PROTOCOL,
        "size": subject.size,
        "dataset": subject.dataset,
        **real.info,
        **subject.version["params"],
    }


def run_tags(metas: list[dict]) -> dict:
    return {"facegan.evaluated_runs": ",".join(str(m.get("run_id")) for m in metas)}


def inception_fids(weights: Path, scored: list[Scored], reference: np.ndarray) -> list[float]:
    """Inception-v3 FID of each set against the reference (only with --inception-weights)."""
    from facegan.evaluation.inception import inception_features, load_inception

    model = load_inception(weights)
    reference_features = inception_features(model, reference)
    return [metrics.frechet_distance(inception_features(model, row.images), reference_features) for row in scored]


def table_1(
    rows: list[Scored],
    control: Scored,
    reference: tuple[np.ndarray, np.ndarray],
    training: tuple[np.ndarray, np.ndarray],
    real: RealSets,
    config: EvaluateConfig,
    min_faces: int | None = None,
):
    """Table 1 (one row per generator, the real control last) and the numbers its notes cite:
    (table, {"frechet_noise_floor", "memorisation_threshold", "min_faces", "<set>_faces"}).

    reference / training: (detected, encodings) of the real reference and training faces. Every
    face-space number rests on detected faces only (facegan.evaluation.metrics.face_space), at least
    min_faces of them (default: metrics.MIN_FACES, more when k needs it)."""
    min_faces = min_faces or max(metrics.MIN_FACES, config.k + 1)
    space = metrics.face_space(
        control.encodings, control.detected, reference[1], reference[0], training[1], training[0], min_faces
    )
    entries = [
        {**row_metrics(scored, space, config.k, real.reference), "label": scored.label, "run": row_source(scored.meta)}
        for scored in [*rows, control]
    ]
    if config.inception_weights:
        fids = inception_fids(config.inception_weights, [*rows, control], real.reference)
        entries = [{**entry, "inception_fid": fid} for entry, fid in zip(entries, fids)]
    table = report.build_table(entries[:-1], entries[-1], space.floor)
    return table, {
        "frechet_noise_floor": space.floor,
        "memorisation_threshold": space.threshold,
        "min_faces": min_faces,
        **{f"{name}_faces": count for name, count in space.counts.items()},
    }


def write_files(folder: Path, texts: dict[str, str]) -> list[Path]:
    """Write the report files into `folder`, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        write_text(folder / name, text)
    return [folder / name for name in texts]


def publish(
    run, table, numbers: dict, scored: list[Scored], real: RealSets, subject: Subject, config: EvaluateConfig, seconds
) -> dict:
    """The report's files (evaluations/<run id>/), and everything logged to the evaluate run:
    report files, table JSON, bar chart, detection grids, optional PNGs, metrics and a Prefect
    table artifact. Returns {run_id, table (Markdown), folder, rows}."""
    from prefect.artifacts import create_table_artifact

    dataset, size = subject.dataset, subject.size
    folder = evaluations_root() / run.run_id
    counts = {name.removesuffix("_faces"): count for name, count in numbers.items() if name.endswith("_faces")}
    notes = report.notes(
        real.info,
        (dataset, size),
        subject.version["note"],
        config,
        {"min_faces": metrics.MIN_FACES, **numbers},
        {f"real {k}": v for k, v in counts.items()},
    )
    heading = report.title(dataset, size)
    for file in write_files(folder, report.documents(table, detection.PROTOCOL, notes, heading)):
        run.log_artifact(file, "report")
    run.log_table(table, "report/table1.json")
    charts = (
        (figures.bar_chart(table), "report/bar_chart.png"),
        (
            figures.detection_figure([(s.label, s.images, s.detected) for s in scored]),
            "grids/detected_vs_not_detected.png",
        ),
    )
    for figure, name in charts:
        run.log_figure(figure, name)
        figures.close(figure)
    for row in scored:
        for key, grid in figures.detection_grids(row.images, row.detected).items():
            run.log_image(grid, f"grids/{report.slug(row.label)}_{key}.png")
        if config.keep_pngs:
            run.log_artifact(
                save_pngs(row.images, folder / "samples" / report.slug(row.label), row.detected),
                f"samples/{report.slug(row.label)}",
            )
    run.log_metrics(report.metric_values(table))
    run.log_metrics({**{k: v for k, v in numbers.items() if np.isfinite(v)}, "seconds": seconds})
    create_table_artifact(
        table=table.to_dict("records"),
        key="evaluate-table-1",
        description=f"Table 1 ({dataset}, {size} px), MLflow run {run.run_id}\n\nProtocol: {detection.PROTOCOL}",
    )
    return {
        "run_id": run.run_id,
        "title": heading,
        "table": report.to_markdown(table),
        "folder": str(folder),
        "rows": table.to_dict("records"),
    }


def summary_text(result: dict) -> str:
    """What `facegan evaluate` prints."""
    heading = f"{result['title']}\n\n" if result.get("title") else ""
    return f"{heading}{result['table']}\nreport: {result['folder']}\nmlflow run: {result['run_id']}"
