"""The acquire stage's steps, as plain functions (the flow in flows/acquire.py only wires them).

A local folder is imported in place (tasks/acquisition/local.py). Everything else lands in a raw
set folder opened by `open_raw_set`: a local archive, one URL or preset (`fetch_source`), or many
URLs (a URL list, or the images a crawl found) downloaded in shards: `plan_downloads` splits the
URLs not done yet, the flow maps `Downloader.download` over the shards as Prefect tasks, and
`finish_downloads` closes the journal. `finish_acquire` writes the manifest and the counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefect.artifacts import create_table_artifact
from tqdm import tqdm

from facegan.config.acquire import AcquireConfig
from facegan.config.errors import DownloadError
from facegan.tasks.acquisition import local, manifest, presets, scrape, sources, store, web
from facegan.tasks.common import locks
from facegan.tasks.common.atomic import clean_partials

PARALLEL_SHARDS = 4  # download shards in flight at once (each a bounded thread pool)
SCRAPE_WORKERS = 4  # politeness: concurrent image requests to a crawled site
OFFLINE_HINT = "(offline? pass a local copy with --path, or a mirror with --url)"

Log = Callable[[str], None]


def check_request(config: AcquireConfig) -> tuple[AcquireConfig, str]:
    """Validate the source before any run starts or folder is made; returns the config with a
    resolved --path and the raw set name."""
    name = sources.check_acquire(config)
    if config.path:
        config = config.model_copy(update={"path": local.check_source(config.path)})
    return config, name


def writing_raw_set(name: str):
    """Held for a whole acquire: one writer per raw set. A second acquire into it is refused in
    one line (two at once once left 7,305 of LFW's rows "unreadable": the first to finish cleared
    the other's half-extracted archive from the staging area)."""
    return locks.held(locks.raw_lock(name), locks.acquiring(name))


def run_params(config: AcquireConfig, name: str) -> dict:
    """The MLflow params of an acquire run: the options given, and the raw set name."""
    params = {k: v for k, v in config.model_dump(mode="json").items() if v is not None and k != "parent_run_id"}
    return {**params, "name": name}


def import_options(config: AcquireConfig, log: Log) -> dict:
    """The keywords of local.import_folder (a plain function that tests call without a config)."""
    return dict(
        workers=web.local_workers(config),
        shard_size=config.shard_size,
        progress=config.progress,
        log=log,
        identity=config.identity,
    )


def open_raw_set(name: str) -> Path:
    """The raw set folder for web sources, without the temp files of a killed run."""
    raw = local.claim_raw(name, web.WEB_SOURCE)
    if (raw / "images").is_dir():
        clean_partials(raw / "images")
    return raw


def fetch_source(config: AcquireConfig, raw: Path, log: Log) -> list[dict]:
    """Download one URL or preset (an image or an archive, extracted) into the raw set."""
    url, checksum = config.url, (("sha256", config.sha256) if config.sha256 else None)
    if config.preset:
        preset = presets.get(config.preset)
        url, checksum = preset.url, preset.checksum
    try:
        return web.acquire_url(url, raw, config, checksum, log)
    except DownloadError as exc:
        if config.preset and "connection error" in str(exc):
            raise DownloadError(f"{exc} {OFFLINE_HINT}") from exc
        raise


def import_archive(config: AcquireConfig, raw: Path, log: Log) -> list[dict]:
    """Extract a local zip/tar archive into the raw set."""
    return web.import_archive_file(raw, config, log)


@dataclass
class UrlSet:
    """URLs to download, and what the crawl that found them counted (empty for a URL list)."""

    items: list[dict]
    crawl_stats: dict = field(default_factory=dict)


def read_url_list(config: AcquireConfig) -> UrlSet:
    return UrlSet(web.read_url_list(config.url_list))


def crawl(config: AcquireConfig, log: Log) -> UrlSet:
    """Crawl the site for image links (robots.txt, allowed domains, depth and page limits)."""
    found = scrape.Crawler(config, log=log).crawl(config.scrape, config.depth, config.allow_domain, config.max_pages)
    log(
        f"crawled {found.pages} pages: {len(found.images)} images allowed, {found.skipped_robots} "
        f"skipped by robots.txt, {found.skipped_domain} off the allowed domains"
    )
    return UrlSet(
        found.images,
        {
            "pages_crawled": found.pages,
            "skipped_robots": found.skipped_robots,
            "skipped_domain": found.skipped_domain,
            "failed_pages": len(found.failed_pages),
        },
    )


@dataclass
class DownloadPlan:
    downloader: store.Downloader
    shards: list[list[dict]]
    threads: int  # per shard


def plan_downloads(urls: UrlSet, raw: Path, config: AcquireConfig, log: Log) -> DownloadPlan:
    """Split the URLs not downloaded by an earlier run into shards of bounded thread pools."""
    workers = min(config.workers, SCRAPE_WORKERS) if config.scrape else config.workers
    downloader = store.Downloader(raw, config)
    todo = downloader.pending(urls.items)
    log(f"{len(urls.items)} URLs: {len(urls.items) - len(todo)} done in an earlier run, {len(todo)} to download")
    shards = [todo[i : i + config.shard_size] for i in range(0, len(todo), config.shard_size)]
    downloader.bar = tqdm(total=len(todo), desc="downloading", unit="url", disable=not config.progress, mininterval=1.0)
    return DownloadPlan(downloader, shards, max(1, workers // max(1, min(PARALLEL_SHARDS, len(shards)))))


def download_shard(downloader: store.Downloader, items: list[dict], threads: int) -> list[dict]:
    return downloader.download(items, threads)


def finish_downloads(plan: DownloadPlan, shard_rows: list[list[dict]]) -> int:
    """Close the progress bar and the journal; fail when no URL could be reached at all (the
    journal keeps them: a rerun retries them). Returns the number of URLs attempted."""
    plan.downloader.bar.close()
    plan.downloader.journal.close()
    rows = [row for shard in shard_rows for row in shard]
    unreachable = [r for r in rows if manifest.reason_key(r["reason"]).startswith(("connection", "timeout"))]
    if rows and len(unreachable) == len(rows):
        raise DownloadError(
            f"none of the {len(rows)} URLs could be reached (e.g. {rows[0]['url']}: "
            f"{rows[0]['reason']}); rerun to retry them"
        )
    return len(rows)


def finish_acquire(raw: Path, name: str, extra_rows: list[dict], crawl_stats: dict, started: float) -> manifest.RawSet:
    """Write the raw set's manifest."""
    df = web.finalize(raw, extra_rows)
    stats = {**manifest.stats(df, time.perf_counter() - started), **crawl_stats}
    return manifest.RawSet(name, str(raw), str(raw / "manifest.parquet"), stats)


def publish(raw_set: manifest.RawSet, tracked) -> None:
    """Counts to MLflow (metrics, acquire_stats.json, the manifest) and a Prefect table artifact."""
    stats = raw_set.stats
    tracked.log_metrics(stats)
    tracked.log_dict({"name": raw_set.name, "raw_dir": raw_set.raw_dir, **stats}, "acquire_stats.json")
    tracked.log_artifact(raw_set.manifest, "manifest")
    create_table_artifact(
        table=[{"stat": k, "value": v} for k, v in stats.items()],
        key="acquire-stats",
        description=f"acquire {raw_set.name}: {raw_set.raw_dir}",
    )


@dataclass(frozen=True)
class AcquireResult:
    """The acquire flow's result: the raw set, its counts, the MLflow run, failures by reason."""

    name: str
    raw_dir: str
    manifest: str
    files: int
    ok: int
    duplicates: int
    failed: int
    run_id: str
    failed_reasons: dict[str, int]


def summary(raw_set: manifest.RawSet, run_id: str) -> AcquireResult:
    stats = raw_set.stats
    return AcquireResult(
        name=raw_set.name,
        raw_dir=raw_set.raw_dir,
        manifest=raw_set.manifest,
        files=int(stats["files"]),
        ok=int(stats["ok"]),
        duplicates=int(stats["duplicates"]),
        failed=int(stats["failed"]),
        run_id=run_id,
        failed_reasons={k.removeprefix("failed_"): int(v) for k, v in stats.items() if k.startswith("failed_")},
    )


def summary_line(r: AcquireResult) -> str:
    reasons = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in r.failed_reasons.items())
    return (
        f"acquired {r.name!r}: {r.files} files/URLs, {r.ok} ok, {r.duplicates} duplicates, "
        f"{r.failed} failed{f' ({reasons})' if reasons else ''} -> {r.raw_dir} (MLflow run {r.run_id})"
    )
