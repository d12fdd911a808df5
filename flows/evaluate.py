"""evaluate flow: trained generators -> the Table 1 report in MLflow (wiring only).

generate N faces per run -> split the runs' dataset (control / reference / training) -> score every
set (detection + encodings, cached) -> metrics per row -> table, chart, grids -> MLflow + Prefect.
"""
from __future__ import annotations

import re
import time

import numpy as np
from prefect import flow
from prefect.artifacts import create_table_artifact

from evaluation import detection, metrics, report
from evaluation.real_sets import real_sets
from config.evaluate import EvaluateConfig
from tasks import tracking
from config.errors import InputError
from tasks.scoring import (REAL_LABEL, Scored, dataset_path_of, evaluations_root, generate_task,
                           resolve_dataset_arg, row_labels, row_metrics, save_pngs, score_task)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _common_dataset(config: EvaluateConfig, metas: list[dict]):
    sizes = {m["size"] for m in metas}
    if len(sizes) > 1:
        raise InputError(f"the runs have different image sizes ({', '.join(map(str, sorted(sizes)))}): "
                         "evaluate one size at a time")
    size = sizes.pop()
    if config.dataset:
        return resolve_dataset_arg(config.dataset, size), size
    paths = {str(dataset_path_of(m)) for m in metas}
    if len(paths) > 1:
        raise InputError(f"the runs were trained on different datasets ({', '.join(sorted(paths))}): "
                         "Table 1 compares models on one dataset (or pass --dataset)")
    return dataset_path_of(metas[0]), size


def split_counts(info: dict) -> str:
    """'by identity: 12 of 57 identities held out (312 crops), 1245 training crops'."""
    unit = {"identity": "identities", "source image": "source images"}.get(info.get("split_by"), "groups")
    return (f"by {info.get('split_by', 'group')}: {info.get('held_out_groups')} of {info.get('groups')} {unit} "
            f"held out ({info['held_out_crops']} crops), {info.get('training_groups')} {unit} with "
            f"{info['crops'] - info['held_out_crops']} crops left for training")


def row_source(meta: dict) -> str | None:
    """What a report row evaluated: models:/name/version for a registered model, else the run id
    (or the checkpoint given)."""
    return meta.get("model_uri") or meta.get("run_id") or meta.get("ref")


def check_dataset_version(config: EvaluateConfig, metas: list[dict], path) -> dict:
    """The real control must come from the dataset version the runs trained on (their recorded
    dataset_fingerprint). A changed dataset is refused unless --allow-changed-dataset, which
    flags it in the report. Returns the params/notes describing the check."""
    from tasks.training.data import dataset_fingerprint

    current = dataset_fingerprint(path)
    changed = [m for m in metas if m.get("dataset_fingerprint") and m["dataset_fingerprint"] != current]
    unknown = [m for m in metas if not m.get("dataset_fingerprint")]
    if changed and not config.allow_changed_dataset:
        m = changed[0]
        raise InputError(f"run {row_source(m)} was trained on another version of {path} (fingerprint "
                         f"{m['dataset_fingerprint']}, now {current}: re-cropped since), so its real control "
                         "would not be the data it learned from; pass --dataset with the version it trained "
                         "on, or --allow-changed-dataset to score anyway (flagged in the report)")
    note = f"Real control drawn from dataset version {current}"
    if changed:
        note += (" — NOT the version " + ", ".join(sorted({f"{m['dataset_fingerprint']} ({row_source(m)})"
                                                          for m in changed}))
                 + " the runs trained on (--allow-changed-dataset)")
    elif unknown:
        note += (" — the version " + ", ".join(str(row_source(m)) for m in unknown)
                 + " trained on is unknown (trained before facegan recorded it)")
    else:
        note += ", the version every run trained on"
    return {"params": {"dataset_fingerprint": current, "dataset_changed": bool(changed),
                       "dataset_version_unknown": bool(unknown)}, "note": note + "."}


def add_inception_fid(weights, entries: list[dict], scored: list[Scored], reference: np.ndarray) -> None:
    from evaluation.inception import inception_features, load_inception

    model = load_inception(weights)
    reference_features = inception_features(model, reference)
    for entry, row in zip(entries, scored):
        entry["inception_fid"] = metrics.frechet_distance(inception_features(model, row.images),
                                                          reference_features)


@flow(name="evaluate", log_prints=True)
def evaluate(config: EvaluateConfig) -> dict:
    """Table 1 for the given training runs; returns {run_id, table (markdown), folder}."""
    start = time.perf_counter()
    generated = [generate_task(ref, config.n, config.seed, config.device) for ref in config.run]
    metas = [meta for _, meta in generated]
    path, size = _common_dataset(config, metas)
    version = check_dataset_version(config, metas, path)  # before any MLflow run is opened
    real = real_sets(path, config.n, size, config.held_out, config.seed, config.max_training)
    dataset = metas[0].get("dataset") or path.parent.name
    params = {**config.model_dump(exclude={"parent_run_id", "run"}, mode="json"), "runs": config.run,
              "protocol": detection.PROTOCOL, "size": size, "dataset": dataset, **real.info,
              **version["params"]}
    with tracking.run("evaluate", run_name=config.name or f"evaluate-{dataset}-{size}", params=params,
                      parent_run_id=config.parent_run_id,
                      tags={"facegan.evaluated_runs": ",".join(str(m.get("run_id")) for m in metas)}) as run:
        folder = evaluations_root() / run.run_id
        score = dict(detector=config.detector, workers=config.workers)
        rows = []
        for label, (images, meta) in zip(row_labels(metas), generated):
            det, enc = score_task(images, label=label, **score)
            rows.append(Scored(label, images, det, enc, meta))
        det, enc = score_task(real.control, label="real control", **score)
        control = Scored(REAL_LABEL, real.control, det, enc, {})
        _, reference_enc = score_task(real.reference, label="real reference", **score)
        _, training_enc = score_task(real.training, label="training faces", **score)

        threshold = metrics.memorisation_threshold(metrics.nearest_distances(control.encodings, training_enc))
        noise_floor = metrics.frechet_distance(control.encodings, reference_enc)
        entries = []
        for scored in [*rows, control]:
            entry = row_metrics(scored, reference_enc, training_enc, threshold, config.k, real.reference)
            entries.append({**entry, "label": scored.label, "run": row_source(scored.meta)})
        if config.inception_weights:
            add_inception_fid(config.inception_weights, entries, [*rows, control], real.reference)
        table = report.build_table(entries[:-1], entries[-1], noise_floor)
        notes = [f"Real control: {real.info['n_real']} held-out crops of {dataset} ({size} px); every row "
                 f"is compared with {real.info['n_real']} other held-out crops (reference set).",
                 version["note"],
                 f"Held-out split: {split_counts(real.info)}, fraction {config.held_out}; memorisation "
                 f"distances go to the {real.info['training_crops']} non-held-out (training) crops.",
                 f"Memorised: share of images closer to their nearest training face (128-d "
                 f"face_recognition encoding) than {threshold:.4f}, the 1st percentile of the real "
                 f"control's nearest-training distances.",
                 f"Fréchet noise floor: the same distance between the real control and the "
                 f"disjoint real reference set. Precision/recall: k-NN manifolds, k={config.k}.",
                 "SWD: multi-scale sliced Wasserstein distance (Karras et al. 2018; 7x7 patches of a "
                 "Laplacian pyramid down to 16 px) to the same reference set, x 1e3; the real "
                 "control's SWD is its noise floor. Budget: generator steps / thousands of real "
                 "images shown to D / CPU-minutes of training.",
                 f"Generated with seed {config.seed} (EMA generator when the run kept one)."]
        files = report.write_report(table, folder, detection.PROTOCOL, notes)

        for file in files:
            run.log_artifact(file, "report")
        run.log_table(table, "report/table1.json")
        grid_rows = [(s.label, s.images, s.detected) for s in [*rows, control]]
        for figure, name in ((report.bar_chart(table), "report/bar_chart.png"),
                             (report.detection_figure(grid_rows), "grids/detected_vs_not_detected.png")):
            run.log_figure(figure, name)
            report.close(figure)
        for scored in [*rows, control]:
            for key, grid in report.detection_grids(scored.images, scored.detected).items():
                run.log_image(grid, f"grids/{_slug(scored.label)}_{key}.png")
            if config.keep_pngs:
                run.log_artifact(save_pngs(scored.images, folder / "samples" / _slug(scored.label)),
                                 f"samples/{_slug(scored.label)}")
        run.log_metrics({f"{_slug(r['model'])}.{key}": r[col] for r in table.to_dict("records")
                         for key, col in (("detection_rate", "detection rate"),
                                          ("relative_detection_rate", "relative to real control"),
                                          ("memorised", "memorised (< real p1)"),
                                          ("nearest_training_distance", "mean nearest-training distance"),
                                          ("frechet", "Fréchet distance (face enc.)"),
                                          ("frechet_ratio", "Fréchet ÷ floor"), ("swd", "SWD ×1e3"),
                                          ("swd_ratio", "SWD ÷ floor"),
                                          ("precision", "precision"), ("recall", "recall"),
                                          ("inception_fid", report.INCEPTION_COLUMN)) if col in r})
        run.log_metrics({"frechet_noise_floor": noise_floor, "memorisation_threshold": threshold,
                         "seconds": time.perf_counter() - start})
        markdown = report.to_markdown(table)
        create_table_artifact(table=table.to_dict("records"), key="evaluate-table-1",
                              description=f"Table 1 ({dataset}, {size} px), MLflow run {run.run_id}\n\n"
                              f"Protocol: {detection.PROTOCOL}")
    print(f"Table 1 written to {folder}")
    return {"run_id": run.run_id, "table": markdown, "folder": str(folder),
            "rows": table.to_dict("records")}


def main(config: EvaluateConfig) -> str:
    result = evaluate(config)
    return f"{result['table']}\nreport: {result['folder']}\nmlflow run: {result['run_id']}"
