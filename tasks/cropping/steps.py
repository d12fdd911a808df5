"""The crop stage's steps: plain functions plus thin Prefect task wrappers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.cropping.shards import CropParams, crop_rows, params_dict, save_shard
from tasks.errors import InputError
from tasks.paths import MANIFEST, raw_dir


def load_raw_rows(raw_name: str) -> list[dict]:
    """The usable images of a raw set: status 'ok', one row per distinct content hash."""
    table = pd.read_parquet(raw_dir(raw_name) / MANIFEST)
    if "status" in table:
        table = table[table["status"] == "ok"]
    table = table[table["path"].notna()]
    if "sha256" in table:
        table = table.drop_duplicates("sha256")
    if "identity" not in table:
        table["identity"] = None
    if table.empty:
        raise InputError(f"raw set {raw_name!r} has no usable images")
    table = table.astype({"identity": object}).where(table.notna(), None)
    return table[["path", "sha256", "identity"]].to_dict("records")


def fingerprint(rows: list[dict], params: CropParams, dedupe: bool) -> str:
    payload = json.dumps({"params": params_dict(params), "dedupe": dedupe,
                          "rows": [(r["path"], r.get("sha256")) for r in rows]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def plan_shards(rows: list[dict], shard_size: int, params: CropParams, work_dir: Path) -> list[tuple[list[dict], Path]]:
    """Group rows into shards; each shard's output file is named by its content and parameters."""
    shards = []
    for start in range(0, len(rows), shard_size):
        chunk = rows[start:start + shard_size]
        key = fingerprint(chunk, params, dedupe=False)[:24]
        shards.append((chunk, work_dir / f"shard-{key}.npz"))
    return shards


def crop_shard(rows: list[dict], params: CropParams, target: Path) -> Path:
    """Crop one shard into `target` unless a previous (possibly killed) run already did."""
    if target.is_file():
        return target
    import cv2

    cv2.setNumThreads(1)  # one shard per worker thread (also on Dask workers): no oversubscription
    return save_shard(crop_rows(rows, params), target)


def _shard_cache_key(context, parameters) -> str | None:
    # Cached exactly when the shard's output file is present and unchanged.
    target = Path(parameters["target"])
    return f"crop-shard:{target}:{target.stat().st_mtime_ns}" if target.is_file() else None


crop_shard_task = task(crop_shard, name="crop-shard", cache_key_fn=_shard_cache_key, persist_result=True,
                       retries=1, log_prints=False)


def assemble(shard_files: list[Path], sizes: list[int], dedupe: bool, root: Path, meta: dict,
             workers: int, seed: int = 0) -> dict:
    """Merge shards and swap in one dataset per size. Returns the stats."""
    import shutil

    from tasks.cropping.dataset import merge_shards, swap_in, write_size
    from tasks.cropping.shards import load_shard

    shards = [load_shard(p) for p in shard_files]
    manifest, arrays, dropped, origins = merge_shards(shards, sizes, dedupe)
    faces = [n for s in shards for n in (s.faces_per_image or [])]
    stats = {
        "images_in": sum(s.images for s in shards),
        "images_unreadable": sum(s.unreadable for s in shards),
        "images_no_face": sum(1 for n in faces if n == 0),
        "images_one_face": sum(1 for n in faces if n == 1),
        "images_many_faces": sum(1 for n in faces if n > 1),
        "faces_detected": sum(faces),
        "duplicates_dropped": dropped,
        "crops": int(len(manifest)),
    }
    if manifest.empty:
        raise InputError(f"no faces found in {stats['images_in']} images "
                         f"({stats['images_unreadable']} unreadable): nothing to write")
    staging_root = root / ".staging"
    shutil.rmtree(staging_root, ignore_errors=True)
    for size in sizes:
        write_size(staging_root / str(size), size, manifest, arrays[size], {**meta, "stats": stats},
                   workers=workers, seed=seed, origins=origins)
    for size in sizes:
        swap_in(staging_root / str(size), root / str(size))
        stats[f"crops_{size}"] = int(len(arrays[size]))
    shutil.rmtree(staging_root, ignore_errors=True)
    return stats


assemble_task = task(assemble, name="assemble-datasets")


def publish(run, stats: dict, root: Path, sizes: list[int]) -> None:
    """Stats and contact sheets to MLflow; a stats table as a Prefect artifact."""
    from prefect.artifacts import create_table_artifact

    from tasks.cropping.dataset import CONTACT_SHEET

    run.log_metrics(stats)
    for size in sizes:
        run.log_artifact(root / str(size) / CONTACT_SHEET, f"contact_sheets/{size}")
        run.log_artifact(root / str(size) / "meta.json", f"datasets/{size}")
    try:
        create_table_artifact(key="crop-stats", table=[{"stat": k, "value": v} for k, v in stats.items()],
                              description=f"facegan crop: {root.name}")
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass
