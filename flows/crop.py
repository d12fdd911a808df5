"""crop flow: a raw image set -> face crop datasets at 48/64/128 px (wiring only)."""
from __future__ import annotations

import shutil
import time

from prefect import flow
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from tqdm import tqdm

from config.crop import CropConfig
from tasks import tracking
from tasks.atomic import clean_partials
from tasks.cropping.dataset import NO_FACE_SHEET, REJECTED, read_meta, recover
from tasks.cropping.detect import HaarParams
from tasks.cropping.runner import connect_cluster, shard_runner
from tasks.cropping.shards import CropParams
from tasks.cropping.steps import (assemble_task, crop_shard_task, fingerprint, load_raw_rows, plan_shards, publish,
                                  raw_skipped, report_lines)
from config.errors import InputError
from tasks.paths import check_name, dataset_dir, resolve_raw


def crop_params(config: CropConfig) -> CropParams:
    return CropParams(sizes=tuple(config.sizes), largest_only=config.largest_only, margin=config.margin,
                      haar=HaarParams(config.scale_factor, config.min_neighbors, config.min_face),
                      pad=config.pad, aligned=config.aligned)


@flow(name="crop", task_runner=ThreadPoolTaskRunner(), log_prints=True)
def crop(config: CropConfig = CropConfig()) -> dict:
    raw_name = resolve_raw(config.raw)
    name = check_name(config.name or raw_name)
    # on a Dask cluster, shards are sized for the cluster's threads instead of config.workers
    address, slots = connect_cluster(config.dask_address) if config.dask_address else (None, config.workers)
    root = dataset_dir(name)
    recover(root)
    rows = load_raw_rows(raw_name)
    params = crop_params(config)
    fp = fingerprint(rows, params, config.dedupe)
    metas = [read_meta(root / str(s)) for s in config.sizes]
    if all(m and m.get("fingerprint") == fp for m in metas):
        print(f"dataset {name!r} is up to date with raw set {raw_name!r}: nothing to crop")
        return {"dataset": name, "path": str(root), "skipped": True, "run_id": metas[0].get("run_id"),
                **{f"crops_{s}": m["crops"] for s, m in zip(config.sizes, metas)}}

    work = root / ".work"
    clean_partials(work) if work.exists() else None
    shard_size = config.shard_size or max(10, min(200, -(-len(rows) // (4 * slots))))
    shards = plan_shards(rows, shard_size, params, work)
    print(f"{len(shards)} shards of up to {shard_size} images on "
          + (f"the Dask cluster at {address} ({slots} threads)" if address else f"{config.workers} threads"))
    with tracking.run("crop", run_name=f"crop-{name}", parent_run_id=config.parent_run_id,
                      params={**config.model_dump(exclude={"parent_run_id"}), "raw": raw_name, "name": name,
                              "images": len(rows), "fingerprint": fp}) as run:
        start = time.perf_counter()
        with shard_runner(config.workers, address) as runner:
            futures = [runner.submit(crop_shard_task, {"rows": chunk, "params": params, "target": target})
                       for chunk, target in shards]
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"crop {name}", unit="shard"):
                future.result()
        meta = {"fingerprint": fp, "raw": raw_name, "run_id": run.run_id, "params": config.model_dump()}
        try:
            stats = assemble_task([t for _, t in shards], config.sizes, config.dedupe, root, meta,
                                  config.workers, config.seed, params, raw_skipped(raw_name))
        except InputError:  # nothing usable: no resume cache to keep, no empty dataset folder left
            shutil.rmtree(work, ignore_errors=True)
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()
            raise
        stats["seconds"] = round(time.perf_counter() - start, 2)
        stats["images_per_s"] = round(stats["images_in"] / max(stats["seconds"], 1e-9), 1)
        publish(run, stats, root, config.sizes)
    shutil.rmtree(work, ignore_errors=True)
    return {"dataset": name, "path": str(root), "skipped": False, "run_id": run.run_id, **stats}


def main(config: CropConfig) -> str:
    resolve_raw(config.raw)  # fail fast, before a Prefect server starts, on an unknown raw set
    check_name(config.name) if config.name else None
    connect_cluster(config.dask_address) if config.dask_address else None
    result = crop(config)
    if result["skipped"]:
        return f"dataset {result['dataset']} up to date at {result['path']}"
    sizes = ", ".join(f"{s}px: {result[f'crops_{s}']}" for s in config.sizes)
    report = "\n".join(report_lines(result))
    return (f"cropped {result['images_in']} images -> {result['crops']} faces ({sizes}) "
            f"in {result['seconds']} s ({result['images_per_s']} img/s)\n{report}\n"
            f"dataset: {result['path']} (images without a crop: {NO_FACE_SHEET}, {REJECTED})\n"
            f"mlflow run: {result['run_id']}")
