"""The crop stage's second half: the raw set's rows read for cropping, and the shard files merged
into one dataset per size (tasks/cropping/dataset.py writes them; report.py counts the passes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from facegan.config.crop import CropConfig
from facegan.config.errors import InputError
from facegan.tasks.common.paths import MANIFEST, raw_dir
from facegan.tasks.cropping.results import CropStats


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
