"""The acquire flow: bring images into FACEGAN_HOME/raw/<name> from one source (a local folder,
a URL, a URL list, a dataset preset or a scraped site) and write its manifest. Wiring only: the
work lives in tasks/acquisition/."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from flows.config.acquire import AcquireConfig
from flows.config.base import default_workers
from tasks import tracking
from tasks.acquisition import local

import_folder_task = task(local.import_folder, name="import-folder")


def source_name(config: AcquireConfig) -> str:
    """The raw set name: --name, else derived from the source."""
    if config.name:
        return config.name
    if config.path:
        return local.default_name(Path(config.path).name)
    from tasks.acquisition import web

    return web.default_name(config)


def _params(config: AcquireConfig, name: str) -> dict:
    params = {k: v for k, v in config.model_dump(mode="json").items()
              if v is not None and k != "parent_run_id"}
    params["name"] = name
    return params


def _publish(result: dict, tracked, config: AcquireConfig) -> None:
    stats = result["stats"]
    tracked.log_metrics(stats)
    tracked.log_dict({"name": result["name"], "raw_dir": result["raw_dir"], **stats}, "acquire_stats.json")
    tracked.log_artifact(result["manifest"], "manifest")
    table = [{"stat": k, "value": v} for k, v in stats.items()]
    create_table_artifact(table=table, key="acquire-stats",
                          description=f"acquire {result['name']}: {result['raw_dir']}")


@flow(name="acquire", log_prints=True)
def acquire(config: AcquireConfig) -> dict:
    """Acquire images into raw/<name>; returns name, raw dir, counts and the MLflow run id."""
    logger = get_run_logger()
    if config.path:
        config.path = local.check_folder(config.path)  # a missing folder fails before any run starts
    name = source_name(config)
    workers = config.workers
    with tracking.run("acquire", run_name=f"acquire-{name}", params=_params(config, name),
                      parent_run_id=config.parent_run_id) as tracked:
        if config.path:
            result = import_folder_task(config.path, name, workers=min(workers, default_workers()),
                                        shard_size=config.shard_size, log=logger.info)
        else:
            from tasks.acquisition import web

            result = web.acquire_web(config, name, logger.info)
        _publish(result, tracked, config)
        run_id = tracked.run_id
    stats = result["stats"]
    return {"name": result["name"], "raw_dir": result["raw_dir"], "manifest": result["manifest"],
            "files": int(stats["files"]), "ok": int(stats["ok"]), "duplicates": int(stats["duplicates"]),
            "failed": int(stats["failed"]), "run_id": run_id}


def main(config: AcquireConfig) -> str:
    """CLI entry: run the flow and return the summary to print."""
    from flows.cli import _quiet_expected_errors

    _quiet_expected_errors()  # Prefect's log handlers exist only now that prefect is imported
    r = acquire(config)
    return (f"acquired {r['name']!r}: {r['files']} files/URLs, {r['ok']} ok, {r['duplicates']} duplicates, "
            f"{r['failed']} failed -> {r['raw_dir']} (MLflow run {r['run_id']})")
