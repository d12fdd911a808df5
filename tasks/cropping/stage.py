"""The crop stage's steps: plain functions plus thin Prefect task wrappers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
from prefect import task

from tasks.cropping.shards import CropParams, crop_rows, save_shard
from config.errors import InputError
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


def raw_skipped(raw_name: str) -> list[dict]:
    """The files the import refused (status 'failed'): path or url, identity and reason."""
    table = pd.read_parquet(raw_dir(raw_name) / MANIFEST)
    if "status" not in table:
        return []
    failed = table[table["status"] == "failed"]
    cols = [c for c in ("path", "url", "identity", "reason") if c in failed]
    return failed[cols].astype(object).where(failed[cols].notna(), None).to_dict("records")


def fingerprint(rows: list[dict], params: CropParams, dedupe: bool) -> str:
    payload = json.dumps({"params": asdict(params), "dedupe": dedupe,
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
             workers: int, seed: int = 0, params: CropParams | None = None,
             skipped: list[dict] | None = None) -> dict:
    """Merge shards and swap in one dataset per size. Returns the stats.

    With `params.aligned` None (automatic), a set that looks aligned gets the images where no pass
    found a face cut at its typical face box (tasks.cropping.report)."""
    import shutil

    from tasks.cropping import report
    from tasks.cropping.dataset import merge_shards, swap_in, thumbnails_sheet, write_size
    from tasks.cropping.shards import load_shard

    skipped = skipped or []
    shards = [load_shard(p) for p in shard_files]
    outcomes = [o for s in shards for o in (s.outcomes or [])]
    records = [r for s in shards for r in s.records]
    typical = None
    if params is not None and params.aligned is None:
        typical = report.aligned_set_box(records, outcomes)
        if typical is not None:
            shards.append(report.fill_aligned(outcomes, typical, params))
    manifest, arrays, dropped, origins = merge_shards(shards, sizes, dedupe)
    faces = [n for s in shards for n in (s.faces_per_image or [])]
    read = [o for o in outcomes if o.get("width") is not None]
    stats = {
        "images_in": sum(s.images for s in shards),
        "images_unreadable": sum(s.unreadable for s in shards),
        "images_no_face": sum(1 for o in read if o.get("reason")) if outcomes else sum(1 for n in faces if n == 0),
        "images_one_face": sum(1 for n in faces if n == 1),
        "images_many_faces": sum(1 for n in faces if n > 1),
        "faces_detected": sum(faces),
        **report.pass_stats(outcomes, skipped),
        "aligned_set": int(typical is not None),
        "duplicates_dropped": dropped,
        "crops": int(len(manifest)),
    }
    if manifest.empty:
        detail = f"{stats['images_unreadable']} unreadable"
        if skipped:
            reasons = ", ".join(f"{n} {k.removeprefix('skipped_').replace('_', ' ')}"
                                for k, n in stats.items() if k.startswith("skipped_"))
            detail += f"; {len(skipped)} files skipped at import: {reasons}"
        raise InputError(f"no faces found in {stats['images_in']} images ({detail}): nothing to write")
    rejected = report.rejected_table(outcomes, skipped)
    sheet = thumbnails_sheet(report.no_face_images(outcomes, seed=seed))
    staging_root = root / ".staging"
    shutil.rmtree(staging_root, ignore_errors=True)
    for size in sizes:
        write_size(staging_root / str(size), size, manifest, arrays[size], {**meta, "stats": stats},
                   workers=workers, seed=seed, origins=origins, rejected=rejected, no_face_sheet=sheet)
    for size in sizes:
        swap_in(staging_root / str(size), root / str(size))
        stats[f"crops_{size}"] = int(len(arrays[size]))
    shutil.rmtree(staging_root, ignore_errors=True)
    return stats


assemble_task = task(assemble, name="assemble-datasets")


def publish(run, stats: dict, root: Path, sizes: list[int]) -> None:
    """Stats and contact sheets to MLflow; a stats table as a Prefect artifact."""
    from prefect.artifacts import create_table_artifact

    from prefect.artifacts import create_markdown_artifact

    from tasks.cropping.dataset import CONTACT_SHEET, NO_FACE_SHEET, REJECTED

    run.log_metrics(stats)
    for size in sizes:
        run.log_artifact(root / str(size) / CONTACT_SHEET, f"contact_sheets/{size}")
        run.log_artifact(root / str(size) / "meta.json", f"datasets/{size}")
    first = root / str(sizes[0])
    for name in (NO_FACE_SHEET, REJECTED):
        if (first / name).is_file():
            run.log_artifact(first / name, "no_face")
    try:
        create_table_artifact(key="crop-stats", table=[{"stat": k, "value": v} for k, v in stats.items()],
                              description=f"facegan crop: {root.name}")
        create_markdown_artifact(key="crop-report", markdown=report_markdown(stats, root, sizes),
                                 description=f"facegan crop: {root.name}")
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass


def report_lines(stats: dict) -> list[str]:
    """The crop report in a few lines (console and Prefect artifact)."""
    skipped = ", ".join(f"{n} {k.removeprefix('skipped_').replace('_', ' ')}"
                        for k, n in stats.items() if k.startswith("skipped_"))
    return [
        f"images read: {stats.get('images_read', 0)} of {stats.get('images_in', 0)} "
        f"({stats.get('images_unreadable', 0)} unreadable; {stats.get('files_skipped', 0)} files skipped "
        f"at import{': ' + skipped if skipped else ''})",
        f"faces found: {stats.get('faces_haar', 0)} by Haar in {stats.get('images_haar', 0)} images, "
        f"{stats.get('faces_haar_padded', 0)} by the padded search, {stats.get('faces_aligned', 0)} aligned"
        + (" (aligned set)" if stats.get("aligned_set") else ""),
        f"images without a face: {stats.get('images_no_face', 0)}"
        + (f" ({stats['images_too_small']} too small)" if stats.get("images_too_small") else ""),
    ]


def report_markdown(stats: dict, root: Path, sizes: list[int]) -> str:
    from tasks.cropping.dataset import NO_FACE_SHEET, REJECTED

    first = root / str(sizes[0])
    lines = [f"# facegan crop: {root.name}", ""] + [f"- {line}" for line in report_lines(stats)]
    if (first / REJECTED).is_file():
        table = pd.read_parquet(first / REJECTED)
        if len(table):
            lines += ["", f"Images that gave no crop (first 50 of {len(table)}; all in `{first / REJECTED}`, "
                      f"contact sheet `{first / NO_FACE_SHEET}`, MLflow artifacts `no_face/`):", "",
                      "| source | stage | reason |", "|---|---|---|"]
            lines += [f"| {r.source} | {r.stage} | {r.reason} |" for r in table.head(50).itertuples()]
    return "\n".join(lines)
