"""evaluate flow: trained generators -> the Table 1 report in MLflow (wiring only; the steps live
in tasks/evaluating/scoring.py and tasks/evaluating/report.py).

generate N faces per run -> split the runs' dataset (control / reference / training) -> score every
set (detection + encodings, cached) -> Table 1 -> report files, grids, metrics -> MLflow + Prefect.
"""

from __future__ import annotations

import time

from prefect import flow

from facegan.config.evaluate import EvaluateConfig
from facegan.tasks import steps
from facegan.tasks.common import tracking
from facegan.tasks.evaluating import report
from facegan.tasks.evaluating.scoring import REAL_LABEL, Scored, row_labels


@flow(name="evaluate", log_prints=True)
def evaluate(config: EvaluateConfig) -> dict:
    """Table 1 for the given training runs; returns {run_id, table (markdown), folder, rows}."""
    started = time.perf_counter()
    generated = [steps.sample_faces(ref, config.n, config.seed, config.device) for ref in config.run]
    subject = report.subject_of(config, [meta for _, meta in generated])  # before any MLflow run opens
    real = steps.load_real_sets(subject.path, config.n, subject.size, config.held_out, config.seed, config.max_training)
    with tracking.run(
        "evaluate",
        run_name=config.name or f"evaluate-{subject.dataset}-{subject.size}",
        params=report.run_params(config, subject, real),
        parent_run_id=config.parent_run_id,
        tags=report.run_tags(subject.metas),
    ) as run:
        score = dict(detector=config.detector, workers=config.workers)
        rows = [
            Scored(label, images, *steps.score_images(images, label=label, **score), meta)
            for label, (images, meta) in zip(row_labels(subject.metas), generated)
        ]
        control = Scored(REAL_LABEL, real.control, *steps.score_images(real.control, label=REAL_LABEL, **score), {})
        reference = steps.score_images(real.reference, label="real reference", **score)
        training = steps.score_images(real.training, label="training faces", **score)
        table, numbers = steps.table_1(rows, control, reference, training, real, config)
        seconds = time.perf_counter() - started
        result = steps.publish_report(run, table, numbers, [*rows, control], real, subject, config, seconds)
    print(f"Table 1 written to {result['folder']}")
    return result


def main(config: EvaluateConfig) -> str:
    return report.summary_text(evaluate(config))
