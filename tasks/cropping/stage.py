"""The crop stage's steps, as plain functions (the flow in flows/crop.py only wires them).

`plan_crop` resolves the raw set and the dataset, and either finds the dataset up to date or splits
the raw images into shards; the flow maps `crop_shard` over the shards (Prefect tasks on a thread
pool or a Dask cluster, cached by their output file), then `build_datasets` merges them into one
dataset per size (assemble.py), swapped in atomically; publish.py reports the counts, results.py
holds what the stage returns.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from facegan.config.crop import CropConfig
from facegan.config.errors import InputError
from facegan.tasks.common import locks
from facegan.tasks.common.atomic import clean_partials
from facegan.tasks.common.paths import dataset_dir
from facegan.tasks.cropping.assemble import assemble, load_raw_rows, raw_skipped
from facegan.tasks.cropping.dataset import read_meta, recover
from facegan.tasks.cropping.request import check_request
from facegan.tasks.cropping.results import CropResult, CropStats
from facegan.tasks.cropping.runner import shard_runner
from facegan.tasks.cropping.shards import crop_options, crop_rows, save_shard


@dataclass
class CropPlan:
    raw_name: str
    name: str
    root: Path  # datasets/<name>
    rows: list[dict]
    config: CropConfig
    fingerprint: str
    shards: list[tuple[list[dict], Path]]  # (rows, output file)
    address: str | None  # the Dask cluster, if any
    current: CropResult | None  # an up-to-date dataset: nothing to crop

    @property
    def work(self) -> Path:
        return self.root / ".work"

    def run_params(self, config: CropConfig) -> dict:
        return {
            **config.model_dump(exclude={"parent_run_id"}),
            "raw": self.raw_name,
            "name": self.name,
            "images": len(self.rows),
            "fingerprint": self.fingerprint,
        }


def plan_crop(config: CropConfig, log=print) -> CropPlan:
    """The raw rows to crop and their shards, or the up-to-date dataset (same raw set, same options)."""
    request = check_request(config)  # on a Dask cluster, shards are sized for its threads
    raw_name, name, address, slots = request.raw, request.name, request.address, request.slots
    root = dataset_dir(name)
    # one writer per dataset: a second crop into it is refused in one line, before it touches .work
    locks.acquire(lock_path(name), busy_message(name))
    try:
        plan = _plan(config, raw_name, name, root, address, slots, log)
    except BaseException:
        locks.release(lock_path(name))
        raise
    if plan.current:
        locks.release(lock_path(name))
    return plan


def lock_path(name: str) -> Path:
    return locks.dataset_lock(name)


def busy_message(name: str) -> str:
    return locks.cropping(name)


def release(plan: CropPlan) -> None:
    locks.release(lock_path(plan.name))


def _plan(config: CropConfig, raw_name: str, name: str, root: Path, address: str | None, slots: int, log) -> CropPlan:
    recover(root)
    rows = load_raw_rows(raw_name)
    fp = fingerprint(rows, config, config.dedupe)
    metas = [read_meta(root / str(s)) for s in config.sizes]
    if all(m and m.get("fingerprint") == fp for m in metas):
        log(f"dataset {name!r} is up to date with raw set {raw_name!r}: nothing to crop")
        crops = {s: m["crops"] for s, m in zip(config.sizes, metas)}
        current = CropResult(name, str(root), True, metas[0].get("run_id"), crops)
        return CropPlan(raw_name, name, root, rows, config, fp, [], address, current)
    work = root / ".work"
    clean_partials(work) if work.exists() else None
    shard_size = config.shard_size or max(10, min(200, -(-len(rows) // (4 * slots))))
    shards = plan_shards(rows, shard_size, config, work)
    log(
        f"{len(shards)} shards of up to {shard_size} images on "
        + (f"the Dask cluster at {address} ({slots} threads)" if address else f"{config.workers} threads")
    )
    return CropPlan(raw_name, name, root, rows, config, fp, shards, address, None)


def crop_all_shards(shard_task, plan: CropPlan, workers: int) -> list[Path]:
    """Map the crop-shard Prefect task over the plan's shards on a thread pool or the Dask
    cluster, with a progress bar; returns the shard files."""
    from prefect.futures import as_completed
    from tqdm import tqdm

    try:
        with shard_runner(workers, plan.address) as runner:
            futures = [
                runner.submit(shard_task, {"rows": chunk, "config": plan.config, "target": target})
                for chunk, target in plan.shards
            ]
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"crop {plan.name}", unit="shard"):
                future.result()
    except BaseException:
        release(plan)
        raise
    return [target for _, target in plan.shards]


def build_datasets(plan: CropPlan, config: CropConfig, run_id: str, started: float) -> CropStats:
    """Merge the shards into one dataset per size (swapped in atomically); returns the stats. When
    nothing is usable, no resume cache and no empty dataset folder are left behind."""
    meta = {"fingerprint": plan.fingerprint, "raw": plan.raw_name, "run_id": run_id, "params": config.model_dump()}
    try:
        stats = assemble(
            [t for _, t in plan.shards],
            config.sizes,
            config.dedupe,
            plan.root,
            meta,
            config.workers,
            config.seed,
            config,
            raw_skipped(plan.raw_name),
        )
    except InputError:
        shutil.rmtree(plan.work, ignore_errors=True)
        if plan.root.is_dir() and not any(plan.root.iterdir()):
            plan.root.rmdir()
        release(plan)
        raise
    except BaseException:
        release(plan)
        raise
    seconds = round(time.perf_counter() - started, 2)
    images_per_s = round(stats.metrics["images_in"] / max(seconds, 1e-9), 1)
    return CropStats({**stats.metrics, "seconds": seconds, "images_per_s": images_per_s}, stats.crops)


def finish_crop(plan: CropPlan, stats: CropStats, run_id: str) -> CropResult:
    """Drop the shard cache (the datasets are in place); returns the flow's result."""
    shutil.rmtree(plan.work, ignore_errors=True)
    release(plan)
    return CropResult(plan.name, str(plan.root), False, run_id, stats.crops, stats.metrics)


def fingerprint(rows: list[dict], config: CropConfig, dedupe: bool) -> str:
    """Which rows were cropped with which options (crop_options): a dataset is current while it holds."""
    payload = json.dumps(
        {"params": crop_options(config), "dedupe": dedupe, "rows": [(r["path"], r.get("sha256")) for r in rows]},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def plan_shards(rows: list[dict], shard_size: int, config: CropConfig, work_dir: Path) -> list[tuple[list[dict], Path]]:
    """Group rows into shards; each shard's output file is named by its content and parameters."""
    shards = []
    for start in range(0, len(rows), shard_size):
        chunk = rows[start : start + shard_size]
        key = fingerprint(chunk, config, dedupe=False)[:24]
        shards.append((chunk, work_dir / f"shard-{key}.npz"))
    return shards


def crop_shard(rows: list[dict], config: CropConfig, target: Path) -> Path:
    """Crop one shard into `target` unless a previous (possibly killed) run already did."""
    if target.is_file():
        return target
    import cv2

    cv2.setNumThreads(1)  # one shard per worker thread (also on Dask workers): no oversubscription
    return save_shard(crop_rows(rows, config), target)


def shard_cache_key(context, parameters) -> str | None:
    """Prefect cache key of a shard: cached exactly when its output file is present and unchanged."""
    target = Path(parameters["target"])
    return f"crop-shard:{target}:{target.stat().st_mtime_ns}" if target.is_file() else None
