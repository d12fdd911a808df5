"""The `face-pipeline` flow: acquire -> crop -> train (each model x size) -> evaluate (Table 1),
the stage flows called as subflows under one MLflow parent run (facegan.stage=pipeline).

Wiring only. Stage configs are built from the PipelineConfig by plain functions (testable without
Prefect); each stage is skipped when its output is current:
- acquire: the raw set already holds this source (unless --reacquire); a raw set of that name
  holding another source is refused;
- crop: the crop flow itself skips a dataset whose fingerprint matches its raw set and options;
- train: the train flow resumes the run of the same recipe, which ends at once when its budget is
  already reached (a finished run is reused as it is: same run id, no re-registration);
- evaluate: a FINISHED pipeline report for the same training runs (at the same final step), N and seed.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.acquire import OFFLINE_HINT as ACQUIRE_OFFLINE_HINT, acquire
from config.acquire import AcquireConfig
from config.crop import CropConfig
from config.evaluate import EvaluateConfig
from config.pipeline import PipelineConfig
from config.train import TrainConfig
from flows.crop import crop
from flows.evaluate import evaluate
from flows.train import train
from tasks import tracking
from tasks.acquisition import sources
from config.errors import DownloadError, InputError

REPORT_FILES = ("table1.md", "table1.csv", "table1.html")
STEPS_TAG = "facegan.evaluated_steps"


def acquire_config(cfg: PipelineConfig, parent: str | None = None) -> AcquireConfig:
    kind = cfg.source_kind()
    source = {"preset": {"preset": cfg.source.lower()}, "url": {"url": cfg.source},
              "path": {"path": Path(cfg.source).expanduser().resolve()}}[kind]
    return AcquireConfig(**source, name=cfg.name, parent_run_id=parent)


def check_source(cfg: PipelineConfig) -> tuple[str, bool]:
    """Fail before anything starts on a source that is not there, or on a raw set of that name
    holding another source's images. Returns (raw set name, whether it holds this source)."""
    return sources.check_pipeline_source(cfg)


OFFLINE_HINT = ("(offline? pass a local copy or a mirror with --source, e.g. "
                "--source ../shared/data/archives/lfw-deepfunneled.tgz)")


def crop_config(cfg: PipelineConfig, name: str, parent: str | None = None) -> CropConfig:
    return CropConfig(raw=name, name=name, sizes=cfg.sizes, largest_only=cfg.largest_only,
                      workers=cfg.workers, seed=cfg.seed, parent_run_id=parent)


def train_configs(cfg: PipelineConfig, dataset: str, parent: str | None = None) -> list[TrainConfig]:
    budget = {"steps": cfg.steps} if cfg.steps else {"cpu_minutes": cfg.cpu_minutes}
    return [TrainConfig(dataset=dataset, size=size, model=model, seed=cfg.seed, device=cfg.device,
                        batch_size=cfg.batch_size, features=cfg.features, parent_run_id=parent, **budget)
            for size in cfg.sizes for model in cfg.models]


def evaluate_config(cfg: PipelineConfig, run_ids: list[str], parent: str | None = None) -> EvaluateConfig:
    return EvaluateConfig(run=run_ids, n=cfg.n, seed=cfg.seed, workers=cfg.workers, max_training=cfg.max_training,
                          parent_run_id=parent)


def trained_steps(run_ids: list[str]) -> str:
    """The final step of each training run ("120,120"): what a report of those runs has scored."""
    return ",".join(str(int(tracking.get_run(r).data.metrics.get("final_step", -1))) for r in run_ids)


def finished_report(config: EvaluateConfig) -> str | None:
    """The run id of a FINISHED evaluate run (made by a pipeline) over exactly these runs, N and
    seed, that scored the runs' current generators (same final steps)."""
    runs = tracking.find_runs("evaluate", f"tags.`facegan.evaluated_runs` = '{','.join(config.run)}' and "
                              f"tags.`{STEPS_TAG}` = '{trained_steps(config.run)}' and "
                              f"params.n = '{config.n}' and params.seed = '{config.seed}' and "
                              "attributes.status = 'FINISHED'")
    return max(runs, key=lambda r: r.info.start_time).info.run_id if runs else None


def report_markdown(run_id: str) -> str:
    return tracking.download_artifacts(run_id, "report/table1.md").read_text()


@flow(name="face-pipeline", log_prints=True)
def face_pipeline(config: PipelineConfig = PipelineConfig()) -> dict:
    """acquire -> crop -> train -> evaluate; returns names, the runs of each stage and the reports."""
    log = get_run_logger()
    name, acquired = check_source(config)
    acq = acquire_config(config)
    params = {**config.model_dump(mode="json", exclude={"parent_run_id"}), "name": name}
    with tracking.run("pipeline", run_name=f"pipeline-{name}", params=params,
                      parent_run_id=config.parent_run_id) as parent:
        pid = parent.run_id
        summary: dict = {"pipeline_run_id": pid, "name": name, "skipped": []}
        if acquired and not config.reacquire:
            log.info(f"acquire: raw set {name!r} already holds {config.source}, skipped (--reacquire to fetch again)")
            summary["skipped"].append("acquire")
        else:
            try:
                summary["acquire_run_id"] = acquire(acq.model_copy(update={"name": name, "parent_run_id": pid}))["run_id"]
            except DownloadError as exc:
                if ACQUIRE_OFFLINE_HINT not in str(exc):
                    raise
                raise DownloadError(str(exc).replace(ACQUIRE_OFFLINE_HINT, OFFLINE_HINT)) from exc

        cropped = crop(crop_config(config, name, pid))
        summary["crop_run_id"] = cropped["run_id"]
        summary["skipped"] += ["crop"] if cropped["skipped"] else []
        counts = {s: cropped.get(f"crops_{s}") for s in config.sizes}
        if not all(counts.values()):
            raise InputError(f"no faces found in raw set {name!r} at some size ({counts}): nothing to train")

        summary["train_run_ids"] = {}
        for tcfg in train_configs(config, name, pid):
            summary["train_run_ids"][f"{tcfg.model}-{tcfg.size}"] = train(tcfg)
        parent.set_tags({"facegan.train_runs": ",".join(summary["train_run_ids"].values())})

        summary["reports"] = {}
        for size in [] if config.skip_evaluate else config.sizes:
            runs = [summary["train_run_ids"][f"{m}-{size}"] for m in config.models]
            ecfg = evaluate_config(config, runs, pid)
            report_id = finished_report(ecfg)
            if report_id:
                log.info(f"evaluate {size}px: report {report_id} is current, skipped")
                summary["skipped"].append(f"evaluate-{size}")
            else:
                report_id = evaluate(ecfg)["run_id"]
                tracking.TrackedRun(report_id).set_tags({STEPS_TAG: trained_steps(runs)})
            markdown = report_markdown(report_id)
            summary["reports"][size] = {"run_id": report_id, "markdown": markdown}
            for file in REPORT_FILES:
                parent.log_artifact(tracking.download_artifacts(report_id, f"report/{file}"), f"report/{size}px")
        parent.log_dict(summary, "pipeline_summary.json")
        parent.set_tags({"facegan.skipped": ",".join(summary["skipped"]) or "none"})
    if summary["reports"]:
        create_markdown_artifact("\n\n".join(f"## {s} px (MLflow run {r['run_id']})\n\n{r['markdown']}"
                                             for s, r in summary["reports"].items()),
                                 key="face-pipeline-report", description=f"Table 1, pipeline run {pid}")
    return summary


def main(config: PipelineConfig) -> str:
    result = face_pipeline(config)
    lines = [r["markdown"] for r in result["reports"].values()]
    lines.append(f"skipped (current): {', '.join(result['skipped']) or 'none'}")
    lines.append(f"training runs: {', '.join(f'{k} {v}' for k, v in result['train_run_ids'].items())}")
    lines.append(f"mlflow pipeline run: {result['pipeline_run_id']}")
    return "\n".join(lines)
