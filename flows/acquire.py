"""The acquire flow: bring images into FACEGAN_HOME/raw/<name> from one source (a local folder,
a URL, a URL list, a dataset preset or a scraped site) and write its manifest. Wiring only: the
steps live in tasks/acquisition/stage.py (and local.py for folders)."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from facegan.config.acquire import AcquireConfig
from facegan.tasks import steps
from facegan.tasks.acquisition import stage
from facegan.tasks.acquisition.stage import PARALLEL_SHARDS
from facegan.tasks.common import tracking


@flow(name="acquire", task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SHARDS))
def acquire(config: AcquireConfig) -> stage.AcquireResult:
    """Acquire images into raw/<name>; returns name, raw dir, counts and the MLflow run id."""
    log = get_run_logger().info
    config, name = stage.check_request(config)  # a bad source fails before any run starts or folder is made
    params, parent = stage.run_params(config, name), config.parent_run_id
    with (
        stage.writing_raw_set(name),  # one acquire per raw set at a time
        tracking.run("acquire", run_name=f"acquire-{name}", params=params, parent_run_id=parent) as tracked,
    ):
        if config.path and config.path.is_dir():
            result = steps.import_folder(config.path, name, **stage.import_options(config, log))
        else:
            started = time.perf_counter()
            raw = steps.open_raw_set(name)
            extra, crawl_stats = [], {}
            if config.path:  # a local zip/tar archive
                extra = steps.import_archive(config, raw, log)
            elif config.url_list or config.scrape:
                urls = steps.crawl(config, log) if config.scrape else steps.read_url_list(config)
                plan = steps.plan_downloads(urls, raw, config, log)
                rows = steps.download_shard.map(unmapped(plan.downloader), plan.shards, unmapped(plan.threads))
                steps.finish_downloads(plan, rows)
                crawl_stats = urls.crawl_stats
            else:  # one URL or a preset
                extra = steps.fetch_source(config, raw, log)
            result = steps.finish_acquire(raw, name, quote(extra), crawl_stats, started)  # quote: not walked by Prefect
        steps.publish_acquire(result, tracked)
    return stage.summary(result, tracked.run_id)


def main(config: AcquireConfig) -> str:
    """CLI entry: run the flow and return the summary to print."""
    return stage.summary_line(acquire(config))
