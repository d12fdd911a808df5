"""The face-pipeline's steps, as plain functions (flows/pipeline.py only wires the stage flows):
each stage's config built from the PipelineConfig, the checks that skip a stage whose output is
current, and the pipeline's report.

A stage config takes every PipelineConfig field of the same name (sizes, largest_only, seed,
workers, device, kimg, steps, cpu_minutes, batch_size, features, n, max_training, ...) except
`name`, whose meaning differs between the two (the pipeline's raw set vs a stage's output).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from prefect.artifacts import create_markdown_artifact

from facegan.config.acquire import AcquireConfig
from facegan.config.base import StageConfig
from facegan.config.crop import CropConfig
from facegan.config.errors import DownloadError, InputError
from facegan.config.evaluate import EvaluateConfig
from facegan.config.pipeline import PipelineConfig
from facegan.config.train import TrainConfig
from facegan.evaluation.report import REPORT_FILES
from facegan.tasks.acquisition import sources, web
from facegan.tasks.acquisition.stage import OFFLINE_HINT as ACQUIRE_OFFLINE_HINT
from facegan.tasks.common import tracking
from facegan.tasks.common.paths import raw_dir
from facegan.tasks.cropping.results import CropResult

STEPS_TAG = "facegan.evaluated_steps"
OFFLINE_HINT = (
    "(offline? pass a local copy or a mirror with --source, e.g. --source ../shared/data/archives/lfw-deepfunneled.tgz)"
)
NOT_SHARED = {"name", "parent_run_id"}

Stage = TypeVar("Stage", bound=StageConfig)


def stage_config(cls: type[Stage], cfg: PipelineConfig, **values) -> Stage:
    """`cls` with the PipelineConfig's fields of the same name, then `values`."""
    shared = set(cls.model_fields) & set(PipelineConfig.model_fields) - NOT_SHARED
    return cls(**{**{k: getattr(cfg, k) for k in shared}, **values})


def check_source(cfg: PipelineConfig) -> tuple[str, bool]:
    """Fail before anything starts on a source that is not there, or on a raw set of that name
    holding another source's images. Returns (raw set name, whether it holds this source whole):
    an archive or image whose import was cut short or damaged since (images missing, members
    unreadable) is acquired again, which repairs it; a folder is imported in place."""
    name, holds = sources.check_pipeline_source(cfg)
    kind, what, _ = sources.pipeline_source(cfg)
    if holds and not (kind == "path" and Path(what).is_dir()):
        holds = web.acquired_whole(raw_dir(name), what)
    return name, holds


def acquire_config(cfg: PipelineConfig, name: str | None = None, parent: str | None = None) -> AcquireConfig:
    kind = cfg.source_kind()
    source = {
        "preset": {"preset": cfg.source.lower()},
        "url": {"url": cfg.source},
        "path": {"path": Path(cfg.source).expanduser().resolve()},
    }[kind]
    return AcquireConfig(**source, name=name or cfg.name, parent_run_id=parent)


def pipeline_hint(exc: DownloadError) -> DownloadError:
    """The acquire flow's offline hint names its own flags; the pipeline's names --source."""
    if ACQUIRE_OFFLINE_HINT not in str(exc):
        return exc
    return DownloadError(str(exc).replace(ACQUIRE_OFFLINE_HINT, OFFLINE_HINT))


def crop_config(cfg: PipelineConfig, name: str, parent: str | None = None) -> CropConfig:
    return stage_config(CropConfig, cfg, raw=name, name=name, parent_run_id=parent)


def check_crops(cropped: CropResult, sizes: list[int], name: str) -> None:
    counts = {s: cropped.crops.get(s) for s in sizes}
    if not all(counts.values()):
        raise InputError(f"no faces found in raw set {name!r} at some size ({counts}): nothing to train")


def train_configs(cfg: PipelineConfig, dataset: str, parent: str | None = None) -> list[TrainConfig]:
    return [
        stage_config(TrainConfig, cfg, dataset=dataset, size=size, model=model, parent_run_id=parent)
        for size in cfg.sizes
        for model in cfg.models
    ]


def evaluate_configs(
    cfg: PipelineConfig, train_run_ids: dict[str, str], parent: str | None = None
) -> list[EvaluateConfig]:
    """One report per size over that size's training runs (none with --skip-evaluate)."""
    return [
        stage_config(EvaluateConfig, cfg, run=[train_run_ids[f"{m}-{size}"] for m in cfg.models], parent_run_id=parent)
        for size in ([] if cfg.skip_evaluate else cfg.sizes)
    ]


def trained_steps(run_ids: list[str]) -> str:
    """The final step of each training run ("120,120"): what a report of those runs has scored."""
    return ",".join(str(int(tracking.get_run(r).data.metrics.get("final_step", -1))) for r in run_ids)


def finished_report(config: EvaluateConfig) -> str | None:
    """The run id of a FINISHED evaluate run (made by a pipeline) over exactly these runs, N and
    seed, that scored the runs' current generators (same final steps)."""
    runs = tracking.find_runs(
        "evaluate",
        f"tags.`facegan.evaluated_runs` = '{','.join(config.run)}' and "
        f"tags.`{STEPS_TAG}` = '{trained_steps(config.run)}' and "
        f"params.n = '{config.n}' and params.seed = '{config.seed}' and "
        "attributes.status = 'FINISHED'",
    )
    return max(runs, key=lambda r: r.info.start_time).info.run_id if runs else None


def mark_report(report_id: str, config: EvaluateConfig) -> None:
    """Tag a new report with the training steps it scored (what finished_report matches)."""
    tracking.TrackedRun(report_id).set_tags({STEPS_TAG: trained_steps(config.run)})


def collect_report(parent, report_id: str, size: int) -> dict:
    """Copy a size's report files into the pipeline run (report/<size>px); returns its Markdown."""
    for file in REPORT_FILES:
        parent.log_artifact(tracking.download_artifacts(report_id, f"report/{file}"), f"report/{size}px")
    return {"run_id": report_id, "markdown": tracking.download_artifacts(report_id, "report/table1.md").read_text()}


def finish(parent, summary: dict) -> dict:
    """The pipeline run's summary JSON, its skipped tag, and the reports as one Prefect artifact."""
    parent.log_dict(summary, "pipeline_summary.json")
    parent.set_tags({"facegan.skipped": ",".join(summary["skipped"]) or "none"})
    if summary["reports"]:
        create_markdown_artifact(
            "\n\n".join(
                f"## {s} px (MLflow run {r['run_id']})\n\n{r['markdown']}" for s, r in summary["reports"].items()
            ),
            key="face-pipeline-report",
            description=f"Table 1, pipeline run {parent.run_id}",
        )
    return summary


def summary_text(result: dict) -> str:
    """What `facegan pipeline` prints."""
    lines = [r["markdown"] for r in result["reports"].values()]
    lines.append(f"skipped (current): {', '.join(result['skipped']) or 'none'}")
    lines.append(f"training runs: {', '.join(f'{k} {v}' for k, v in result['train_run_ids'].items())}")
    lines.append(f"mlflow pipeline run: {result['pipeline_run_id']}")
    return "\n".join(lines)
