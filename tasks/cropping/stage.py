"""The crop stage's steps, as plain functions (the flow in flows/crop.py only wires them).

`plan_crop` resolves the raw set and the dataset, and either finds the dataset up to date or splits
the raw images into shards; the flow maps `crop_shard` over the shards (Prefect tasks on a thread
pool or a Dask cluster, cached by their output file), then `build_datasets` merges them into one
dataset per size, swapped in atomically, and `publish` reports the counts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from facegan.config.crop import CropConfig
from facegan.config.errors import InputError
from facegan.tasks.common import locks
from facegan.tasks.common.atomic import clean_partials
from facegan.tasks.common.paths import MANIFEST, dataset_dir, raw_dir
from facegan.tasks.cropping.dataset import NO_FACE_SHEET, REJECTED, read_meta, recover
from facegan.tasks.cropping.request import check_request
from facegan.tasks.cropping.runner import shard_runner
from facegan.tasks.cropping.shards import crop_options, crop_rows, save_shard


@dataclass(frozen=True)
class CropStats:
    """What a crop counted: `metrics` as logged to MLflow (crops_<size> among them) and `crops`,
    the crops written per size."""

    metrics: dict[str, float]
    crops: dict[int, int]


@dataclass(frozen=True)
class CropResult:
    """The crop flow's result: the dataset, whether it was current (skipped), the MLflow run that
    cropped it, its crops per size, and this run's counts (empty when skipped)."""

    dataset: str
    path: str
    skipped: bool
    run_id: str | None
    crops: dict[int, int]
    stats: dict[str, float] = field(default_factory=dict)


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


def summary_text(result: CropResult, sizes: list[int]) -> str:
    """What `facegan crop` prints."""
    if result.skipped:
        return f"dataset {result.dataset} up to date at {result.path}"
    stats = result.stats
    per_size = ", ".join(f"{s}px: {result.crops[s]}" for s in sizes)
    report = "\n".join(report_lines(stats))
    return (
        f"cropped {stats['images_in']} images -> {stats['crops']} faces ({per_size}) "
        f"in {stats['seconds']} s ({stats['images_per_s']} img/s)\n{report}\n"
        f"dataset: {result.path} (images without a crop: {NO_FACE_SHEET}, {REJECTED})\n"
        f"mlflow run: {result.run_id}"
    )


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


def assemble(
    shard_files: list[Path],
    sizes: list[int],
    dedupe: bool,
    root: Path,
    meta: dict,
    workers: int,
    seed: int = 0,
    config: CropConfig | None = None,
    skipped: list[dict] | None = None,
) -> CropStats:
    """Merge shards and swap in one dataset per size. Returns the counts.

    With `config.aligned` None (automatic), a set that looks aligned gets the images where no pass
    found a face cut at its typical face box (facegan.tasks.cropping.report)."""
    from facegan.tasks.cropping import report
    from facegan.tasks.cropping.dataset import merge_shards, swap_in, thumbnails_sheet, write_size
    from facegan.tasks.cropping.shards import load_shard

    skipped = skipped or []
    shards = [load_shard(p) for p in shard_files]
    outcomes = [o for s in shards for o in (s.outcomes or [])]
    records = [r for s in shards for r in s.records]
    typical = None
    if config is not None and config.aligned is None:
        typical = report.aligned_set_box(records, outcomes)
        if typical is not None:
            shards.append(report.fill_aligned(outcomes, typical, config))
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
        **report.face_rank_stats(manifest.to_dict("records")),  # largest face of a photo vs extra faces
    }
    if manifest.empty:
        detail = f"{stats['images_unreadable']} unreadable" + (
            f", {stats['images_too_small']} too small" if stats.get("images_too_small") else ""
        )
        if skipped:
            reasons = ", ".join(
                f"{n} {k.removeprefix('skipped_').replace('_', ' ')}"
                for k, n in stats.items()
                if k.startswith("skipped_")
            )
            detail += f"; {len(skipped)} files skipped at import: {reasons}"
        raise InputError(f"no faces found in {stats['images_in']} images ({detail}): nothing to write")
    rejected = report.rejected_table(outcomes, skipped)
    sheet = thumbnails_sheet(report.no_face_images(outcomes, seed=seed))
    staging_root = root / ".staging"
    shutil.rmtree(staging_root, ignore_errors=True)
    for size in sizes:
        write_size(
            staging_root / str(size),
            size,
            manifest,
            arrays[size],
            {**meta, "stats": stats},
            workers=workers,
            seed=seed,
            origins=origins,
            rejected=rejected,
            no_face_sheet=sheet,
        )
    crops = {size: int(len(arrays[size])) for size in sizes}
    for size in sizes:
        swap_in(staging_root / str(size), root / str(size))
    shutil.rmtree(staging_root, ignore_errors=True)
    return CropStats({**stats, **{f"crops_{size}": n for size, n in crops.items()}}, crops)


def publish(run, crop_stats: CropStats, root: Path, sizes: list[int]) -> None:
    """Stats and contact sheets to MLflow; a stats table as a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from facegan.tasks.cropping.dataset import CONTACT_SHEET

    stats = crop_stats.metrics
    run.log_metrics(stats)
    for size in sizes:
        run.log_artifact(root / str(size) / CONTACT_SHEET, f"contact_sheets/{size}")
        run.log_artifact(root / str(size) / "meta.json", f"datasets/{size}")
    first = root / str(sizes[0])
    for name in (NO_FACE_SHEET, REJECTED):
        if (first / name).is_file():
            run.log_artifact(first / name, "no_face")
    try:
        create_table_artifact(
            key="crop-stats",
            table=[{"stat": k, "value": v} for k, v in stats.items()],
            description=f"facegan crop: {root.name}",
        )
        create_markdown_artifact(
            key="crop-report", markdown=report_markdown(stats, root, sizes), description=f"facegan crop: {root.name}"
        )
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass


def report_lines(stats: dict) -> list[str]:
    """The crop report in a few lines (console and Prefect artifact)."""
    from facegan.tasks.cropping.report import face_rank_line

    skipped = ", ".join(
        f"{n} {k.removeprefix('skipped_').replace('_', ' ')}" for k, n in stats.items() if k.startswith("skipped_")
    )
    return [
        f"images read: {stats.get('images_read', 0)} of {stats.get('images_in', 0)} "
        f"({stats.get('images_unreadable', 0)} unreadable; {stats.get('files_skipped', 0)} files skipped "
        f"at import{': ' + skipped if skipped else ''})",
        f"faces found: {stats.get('faces_haar', 0)} by Haar in {stats.get('images_haar', 0)} images, "
        f"{stats.get('faces_haar_padded', 0)} by the padded search, {stats.get('faces_aligned', 0)} aligned"
        + (" (aligned set)" if stats.get("aligned_set") else ""),
        f"images without a face: {stats.get('images_no_face', 0)}"
        + (f" ({stats['images_too_small']} too small)" if stats.get("images_too_small") else ""),
        *filter(None, [face_rank_line(stats)]),
    ]


def report_markdown(stats: dict, root: Path, sizes: list[int]) -> str:
    first = root / str(sizes[0])
    lines = [f"# facegan crop: {root.name}", ""] + [f"- {line}" for line in report_lines(stats)]
    if (first / REJECTED).is_file():
        table = pd.read_parquet(first / REJECTED)
        if len(table):
            lines += [
                "",
                f"Images that gave no crop (first 50 of {len(table)}; all in `{first / REJECTED}`, "
                f"contact sheet `{first / NO_FACE_SHEET}`, MLflow artifacts `no_face/`):",
                "",
                "| source | stage | reason |",
                "|---|---|---|",
            ]
            lines += [f"| {r.source} | {r.stage} | {r.reason} |" for r in table.head(50).itertuples()]
    return "\n".join(lines)
