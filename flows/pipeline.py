"""The `face-pipeline` flow: acquire -> crop -> train (each model x size) -> evaluate (Table 1),
the stage flows called as subflows under one MLflow parent run (facegan.stage=pipeline).

Wiring only (the steps live in tasks/pipeline/stage.py). Each stage is skipped when its output is current:
- acquire: the raw set already holds this source (unless --reacquire); a raw set of that name
  holding another source is refused;
- crop: the crop flow itself skips a dataset whose fingerprint matches its raw set and options;
- train: the train flow resumes the run of the same recipe, which ends at once when its budget is
  already reached (a finished run is reused as it is: same run id, no re-registration);
- evaluate: a FINISHED pipeline report for the same training runs (at the same final step), N and seed.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from facegan.config.errors import DownloadError
from facegan.config.pipeline import PipelineConfig
from facegan.flows.acquire import acquire
from facegan.flows.crop import crop
from facegan.flows.evaluate import evaluate
from facegan.flows.train import train
from facegan.tasks.common import tracking
from facegan.tasks.pipeline import stage as pipeline


@flow(name="face-pipeline", log_prints=True)
def face_pipeline(config: PipelineConfig = PipelineConfig()) -> dict:
    """acquire -> crop -> train -> evaluate; returns names, the runs of each stage and the reports."""
    log = get_run_logger()
    name, acquired = pipeline.check_source(config)
    params = {**config.model_dump(mode="json", exclude={"parent_run_id"}), "name": name}
    with tracking.run(
        "pipeline", run_name=f"pipeline-{name}", params=params, parent_run_id=config.parent_run_id
    ) as parent:
        pid = parent.run_id
        summary: dict = {"pipeline_run_id": pid, "name": name, "skipped": [], "reports": {}}
        if acquired and not config.reacquire:
            log.info(f"acquire: raw set {name!r} already holds {config.source}, skipped (--reacquire to fetch again)")
            summary["skipped"].append("acquire")
        else:
            try:
                summary["acquire_run_id"] = acquire(pipeline.acquire_config(config, name, pid)).run_id
            except DownloadError as exc:
                raise pipeline.pipeline_hint(exc) from exc

        cropped = crop(pipeline.crop_config(config, name, pid))
        summary["crop_run_id"] = cropped.run_id
        summary["skipped"] += ["crop"] if cropped.skipped else []
        pipeline.check_crops(cropped, config.sizes, name)

        summary["train_run_ids"] = {f"{t.model}-{t.size}": train(t) for t in pipeline.train_configs(config, name, pid)}
        parent.set_tags({"facegan.train_runs": ",".join(summary["train_run_ids"].values())})

        for size, ecfg in zip(config.sizes, pipeline.evaluate_configs(config, summary["train_run_ids"], pid)):
            report_id = pipeline.finished_report(ecfg)
            if report_id:
                log.info(f"evaluate {size}px: report {report_id} is current, skipped")
                summary["skipped"].append(f"evaluate-{size}")
            else:
                report_id = evaluate(ecfg)["run_id"]
                pipeline.mark_report(report_id, ecfg)
            summary["reports"][size] = pipeline.collect_report(parent, report_id, size)
        pipeline.finish(parent, summary)
    return summary


def main(config: PipelineConfig) -> str:
    return pipeline.summary_text(face_pipeline(config))
