"""Import a local folder in place: every file is decoded (not judged by its extension),
hashed, and listed in raw/<name>/manifest.parquet with its absolute path. Nothing is copied.

Shards of files are checked in a process pool; a rerun reuses the rows of files whose
path, size and mtime are unchanged.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from facegan.config.errors import InputError
from facegan.tasks.acquisition import manifest
from facegan.tasks.acquisition.sources import check_claim, check_folder, check_source, default_name  # noqa: F401
from facegan.tasks.common.paths import data_home
from facegan.tasks.cropping import formats

formats.register()  # HEIC/HEIF photos decode (pillow-heif), here and in the forked checker processes


def person_per_folder(files: list[Path], root: Path) -> bool:
    """Whether `root` looks like a one-person-per-folder layout such as LFW's
    <Name>/<Name>_0001.jpg: at least 90% of the files sit in a subfolder and start with its name."""
    nested = [f for f in files if len(f.relative_to(root).parts) > 1]
    if not files or len(nested) < 0.9 * len(files):
        return False
    named = sum(f.name.lower().startswith(f.parent.name.lower()) for f in nested)
    return named >= 0.9 * len(files)


def identities(files: list[Path], root: Path, mode: str = "auto") -> list[str | None]:
    """The identity of each file: its parent folder's name with mode 'folder' (or 'auto' on a
    one-person-per-folder layout, see person_per_folder), else None ('none': an album folder is
    not a person, so the evaluation then splits by source image)."""
    if mode == "none" or (mode == "auto" and not person_per_folder(files, root)):
        return [None] * len(files)
    return [identity_of(f, root) for f in files]


def identity_of(path: Path, root: Path) -> str | None:
    """The parent folder's name when `path` sits in a subfolder of `root` (LFW layout)."""
    rel = path.relative_to(root)
    return rel.parent.name if len(rel.parts) > 1 else None


def list_files(root: Path, unreadable: list[tuple[str, str]] | None = None) -> list[Path]:
    """Every file under `root`, sorted; hidden folders (.git, .thumbnails) and facegan's own data
    home are skipped. Folders that cannot be listed are added to `unreadable` as (path, reason)."""
    home = data_home()
    files = []

    def failed(exc: OSError) -> None:
        if unreadable is not None:
            unreadable.append((str(exc.filename or ""), exc.strerror or str(exc)))

    for folder, dirs, names in os.walk(root, onerror=failed):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(folder, d).resolve() != home)
        files.extend(Path(folder) / n for n in sorted(names))
    return [f for f in files if f.is_file()]


def inspect_file(path: str) -> dict:
    """One manifest row for a local file: decoded, measured and hashed."""
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return manifest.row(path=path, status="failed", reason=f"unreadable: {exc.strerror or exc}")
    checked = manifest.check_image(data)
    base = dict(path=path, bytes=st.st_size, mtime_ns=st.st_mtime_ns, sha256=manifest.sha256_bytes(data))
    if isinstance(checked, str):
        return manifest.row(**base, status="failed", reason=checked)
    return manifest.row(**base, status="ok", width=checked[0], height=checked[1])


def inspect_shard(paths: list[str]) -> list[dict]:
    """Check one shard of files (runs in a worker process)."""
    return [inspect_file(p) for p in paths]


def _unchanged(previous: pd.DataFrame | None, files: list[Path]) -> dict[str, dict]:
    if previous is None or previous.empty:
        return {}
    old = {r["path"]: r for r in previous.to_dict("records") if r.get("path")}
    reused = {}
    for f in files:
        r = old.get(str(f))
        if r is None or r.get("mtime_ns") is None or pd.isna(r.get("mtime_ns")):
            continue
        try:
            st = f.stat()
        except OSError:
            continue
        if st.st_size == r["bytes"] and st.st_mtime_ns == r["mtime_ns"]:
            reused[str(f)] = r
    return reused


def inspect_files(
    paths: list[str], workers: int = 2, shard_size: int = 200, progress: bool = True, desc: str = "checking images"
) -> list[dict]:
    """Rows for `paths`, in order, checked in shards by a process pool."""
    shards = [paths[i : i + shard_size] for i in range(0, len(paths), shard_size)]
    rows: list[dict] = []
    bar = tqdm(total=len(paths), desc=desc, unit="file", disable=not progress, mininterval=1.0)
    if workers <= 1 or len(shards) <= 1:
        for shard in shards:
            rows.extend(inspect_shard(shard))
            bar.update(len(shard))
    else:
        # fork (Linux) needs no importable __main__ and starts instantly; the workers only read
        # files and run Pillow/hashlib, so they never touch locks held by Prefect's threads
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=min(workers, len(shards)), mp_context=ctx) as pool:
            for shard_rows in pool.map(inspect_shard, shards):
                rows.extend(shard_rows)
                bar.update(len(shard_rows))
    bar.close()
    return rows


def claim_raw(name: str, info: dict) -> Path:
    """raw/<name>, refusing to mix a local import with another source under one name."""
    return check_claim(name, info)


def import_folder(
    path: str | Path,
    name: str | None = None,
    workers: int = 2,
    shard_size: int = 200,
    progress: bool = True,
    log: Callable[[str], None] = lambda _m: None,
    identity: str = "auto",
) -> manifest.RawSet:
    """Import `path` (recursive) as raw set `name`.

    Raises FaceganError for a missing or empty folder, or one without any decodable image;
    then nothing under raw/<name> is touched."""
    started = time.perf_counter()
    root = check_folder(path)
    name = name or default_name(root.name)
    source = {"kind": "path", "source": str(root)}
    unreadable: list[tuple[str, str]] = []
    files = list_files(root, unreadable)
    if not files:
        detail = f" (cannot read {unreadable[0][0]}: {unreadable[0][1]})" if unreadable else ""
        raise InputError(f"folder is empty: {root}{detail}")
    for folder, why in unreadable:
        log(f"skipped unreadable folder {folder}: {why}")
    raw = claim_raw(name, source)
    reused = _unchanged(manifest.read(raw), files)
    todo = [str(f) for f in files if str(f) not in reused]
    log(f"{len(files)} files under {root}: {len(reused)} unchanged since the last import, {len(todo)} to check")
    fresh = {r["path"]: r for r in inspect_files(todo, workers, shard_size, progress)}
    rows = []
    people = identities(files, root, identity)
    log(f"identity: {'folder names' if any(people) else 'none (split by source image)'} (--identity {identity})")
    for f, person in zip(files, people):
        r = dict(reused.get(str(f)) or fresh[str(f)])
        r["identity"] = person
        rows.append(r)
    # what could not be listed is reported like any failed file (summary, manifest, MLflow metrics)
    rows += [
        manifest.row(path=folder, status="failed", reason=f"unreadable folder: {why}") for folder, why in unreadable
    ]
    df = manifest.mark_duplicates(manifest.frame(rows))
    if not (df["status"] == "ok").any():
        reasons = df["reason"].map(manifest.reason_key).value_counts()
        detail = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in reasons.items())
        raise InputError(f"no decodable image in {root} ({len(df)} files: {detail})")
    manifest.write_source(raw, source)
    manifest.write(df, raw)
    stats = manifest.stats(df, time.perf_counter() - started)
    return manifest.RawSet(name, str(raw), str(raw / "manifest.parquet"), stats, len(reused))
