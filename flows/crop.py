"""crop flow: a raw image set -> face crop datasets at 48/64/128 px (wiring only; the steps live
in tasks/cropping/stage.py)."""

from __future__ import annotations

import time

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from facegan.config.crop import CropConfig
from facegan.tasks import steps
from facegan.tasks.common import tracking
from facegan.tasks.cropping import publish, stage
from facegan.tasks.cropping.results import CropResult


@flow(name="crop", task_runner=ThreadPoolTaskRunner(), log_prints=True)
def crop(config: CropConfig = CropConfig()) -> CropResult:
    plan = steps.plan_crop(config)
    if plan.current:  # the dataset is up to date with its raw set and options
        return plan.current
    with tracking.run(
        "crop", run_name=f"crop-{plan.name}", parent_run_id=config.parent_run_id, params=plan.run_params(config)
    ) as run:
        started = time.perf_counter()
        stage.crop_all_shards(steps.crop_shard, plan, config.workers)
        stats = steps.build_datasets(
            quote(plan), config, run.run_id, started
        )  # quote: Prefect does not walk 2 x n rows
        steps.publish_crop(run, stats, plan.root, config.sizes)
    return stage.finish_crop(plan, stats, run.run_id)


def main(config: CropConfig) -> str:
    return publish.summary_text(crop(config), config.sizes)
