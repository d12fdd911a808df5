"""The acquire flow: bring images into FACEGAN_HOME/raw/<name> from one source (a local folder,
a URL, a URL list, a dataset preset or a scraped site) and write its manifest. Wiring only: the
work lives in tasks/acquisition/."""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm import tqdm

from config.acquire import AcquireConfig
from config.base import default_workers
from tasks import tracking
from tasks.atomic import clean_partials
from tasks.acquisition import http, local, manifest, presets, scrape, sources, store, web
from config.errors import DownloadError

PARALLEL_SHARDS = 4
OFFLINE_HINT = "(offline? pass a local copy with --path, or a mirror with --url)"
SCRAPE_WORKERS = 4

import_folder_task = task(local.import_folder, name="import-folder", cache_policy=NO_CACHE)
fetch_url_task = task(web.acquire_url, name="fetch-url", cache_policy=NO_CACHE)
import_archive_task = task(web.import_archive_file, name="import-archive", cache_policy=NO_CACHE)
finalize_task = task(web.finalize, name="write-manifest", cache_policy=NO_CACHE)


@task(name="crawl", cache_policy=NO_CACHE)
def crawl_task(config: AcquireConfig, settings: http.HttpSettings, log) -> scrape.CrawlResult:
    crawler = scrape.Crawler(settings, delay=config.delay, log=log)
    return crawler.crawl(config.scrape, config.depth, config.allow_domain, config.max_pages)


@task(name="download-shard", cache_policy=NO_CACHE)
def download_shard_task(downloader: store.Downloader, items: list[dict], threads: int) -> list[dict]:
    return downloader.download(items, threads)


def source_name(config: AcquireConfig) -> str:
    """The raw set name: --name, else derived from the source."""
    return sources.raw_set_name(config)


def http_settings(config: AcquireConfig) -> http.HttpSettings:
    return http.HttpSettings(timeout=config.timeout, retries=config.retries, backoff=config.backoff,
                             max_bytes=config.max_bytes, user_agent=config.user_agent, pool=config.workers)


def download_urls(items: list[dict], raw: Path, config: AcquireConfig, log) -> int:
    """Download the URLs not done yet, in shards (Prefect tasks) of bounded thread pools.
    Returns how many were attempted."""
    downloader = store.Downloader(raw, http_settings(config))
    todo = downloader.pending(items)
    log(f"{len(items)} URLs: {len(items) - len(todo)} done in an earlier run, {len(todo)} to download")
    shards = [todo[i:i + config.shard_size] for i in range(0, len(todo), config.shard_size)]
    threads = max(1, config.workers // max(1, min(PARALLEL_SHARDS, len(shards))))
    downloader.bar = tqdm(total=len(todo), desc="downloading", unit="url", disable=not config.progress,
                          mininterval=1.0)
    try:
        futures = [download_shard_task.submit(downloader, shard, threads) for shard in shards]
        rows = [row for f in futures for row in f.result()]
    finally:
        downloader.bar.close()
        downloader.journal.close()
    unreachable = [r for r in rows if manifest.reason_key(r["reason"]).startswith(("connection", "timeout"))]
    if rows and len(unreachable) == len(rows):  # the journal keeps them: a rerun retries them
        raise DownloadError(f"none of the {len(rows)} URLs could be reached (e.g. {rows[0]['url']}: "
                            f"{rows[0]['reason']}); rerun to retry them")
    return len(todo)


def acquire_web(config: AcquireConfig, name: str, log) -> dict:
    started = time.perf_counter()
    raw = local.claim_raw(name, web.WEB_SOURCE)
    if (raw / "images").is_dir():
        clean_partials(raw / "images")  # temp files of a killed run
    settings = http_settings(config)
    extra: list[dict] = []
    crawl_stats: dict[str, float] = {}
    archive_options = dict(max_archive_bytes=config.max_archive_bytes, max_archive_files=config.max_archive_files,
                           workers=min(config.workers, default_workers()), shard_size=config.shard_size,
                           progress=config.progress, log=log, identity=config.identity)
    if config.path:  # a local zip/tar archive
        extra = import_archive_task(config.path, raw, **archive_options)
    elif config.url_list:
        download_urls(web.read_url_list(config.url_list), raw, config, log)
    elif config.scrape:
        found = crawl_task(config, settings, log)
        log(f"crawled {found.pages} pages: {len(found.images)} images allowed, {found.skipped_robots} "
            f"skipped by robots.txt, {found.skipped_domain} off the allowed domains")
        crawl_stats = {"pages_crawled": found.pages, "skipped_robots": found.skipped_robots,
                       "skipped_domain": found.skipped_domain, "failed_pages": len(found.failed_pages)}
        # politeness: at most SCRAPE_WORKERS concurrent image requests to the crawled site(s)
        polite = config.model_copy(update={"workers": min(config.workers, SCRAPE_WORKERS)})
        download_urls(found.images, raw, polite, log)
    else:
        url, checksum = config.url, (("sha256", config.sha256) if config.sha256 else None)
        if config.preset:
            preset = presets.get(config.preset)
            url, checksum = preset.url, preset.checksum
        try:
            extra = fetch_url_task(url, raw, settings, checksum=checksum, **archive_options)
        except DownloadError as exc:
            if config.preset and "connection error" in str(exc):
                raise DownloadError(f"{exc} {OFFLINE_HINT}") from exc
            raise
    df = finalize_task(raw, extra)
    return {"name": name, "raw_dir": str(raw), "manifest": str(raw / "manifest.parquet"),
            "stats": {**manifest.stats(df, time.perf_counter() - started), **crawl_stats}}


def _params(config: AcquireConfig, name: str) -> dict:
    params = {k: v for k, v in config.model_dump(mode="json").items()
              if v is not None and k != "parent_run_id"}
    params["name"] = name
    return params


def _publish(result: dict, tracked) -> None:
    stats = result["stats"]
    tracked.log_metrics(stats)
    tracked.log_dict({"name": result["name"], "raw_dir": result["raw_dir"], **stats}, "acquire_stats.json")
    tracked.log_artifact(result["manifest"], "manifest")
    table = [{"stat": k, "value": v} for k, v in stats.items()]
    create_table_artifact(table=table, key="acquire-stats",
                          description=f"acquire {result['name']}: {result['raw_dir']}")


@flow(name="acquire", task_runner=ThreadPoolTaskRunner(max_workers=PARALLEL_SHARDS))
def acquire(config: AcquireConfig) -> dict:
    """Acquire images into raw/<name>; returns name, raw dir, counts and the MLflow run id."""
    logger = get_run_logger()
    name = sources.check_acquire(config)  # a bad source fails before any run starts or folder is made
    if config.path:
        config.path = local.check_source(config.path)
    with tracking.run("acquire", run_name=f"acquire-{name}", params=_params(config, name),
                      parent_run_id=config.parent_run_id) as tracked:
        if config.path and config.path.is_dir():
            result = import_folder_task(config.path, name, workers=min(config.workers, default_workers()),
                                        shard_size=config.shard_size, progress=config.progress, log=logger.info,
                                        identity=config.identity)
        else:
            result = acquire_web(config, name, logger.info)
        _publish(result, tracked)
        run_id = tracked.run_id
    stats = result["stats"]
    return {"name": result["name"], "raw_dir": result["raw_dir"], "manifest": result["manifest"],
            "files": int(stats["files"]), "ok": int(stats["ok"]), "duplicates": int(stats["duplicates"]),
            "failed": int(stats["failed"]), "run_id": run_id}


def main(config: AcquireConfig) -> str:
    """CLI entry: run the flow and return the summary to print."""
    try:  # Prefect's log handlers exist only now that prefect is imported: quiet them again
        from flows.cli import _quiet_expected_errors

        _quiet_expected_errors()
    except ImportError:
        pass
    r = acquire(config)
    return (f"acquired {r['name']!r}: {r['files']} files/URLs, {r['ok']} ok, {r['duplicates']} duplicates, "
            f"{r['failed']} failed -> {r['raw_dir']} (MLflow run {r['run_id']})")
