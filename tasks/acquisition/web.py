"""Web sources as plain functions: URL lists, one URL (image or archive), and the final manifest.

Raw set layout for downloads:
    raw/<name>/images/<sha[:2]>/<sha256>.<ext>   single images (URL, URL list, scrape)
    raw/<name>/images/<archive>-<urlhash>/...     an archive's extracted tree
    raw/<name>/.journal/*.jsonl                   rows finished but not yet in the manifest
    raw/<name>/.downloads/<key>.part              an archive being downloaded (resumed by a rerun)
Archive members get the URL `<archive url>#<member path>` so every manifest row has its own URL.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from facegan.config.acquire import AcquireConfig
from facegan.config.base import default_workers
from facegan.config.errors import DownloadError, InputError, NotFoundError
from facegan.tasks.acquisition import archives, http, local, manifest, presets, sources, store
from facegan.tasks.acquisition.sources import WEB_SOURCE

_stem = sources.stem
Log = Callable[[str], None]


def default_name(config) -> str:
    return sources.raw_set_name(config.model_copy(update={"name": None}))


def read_url_list(path: str | Path) -> list[dict]:
    """[{url, identity}] from a .txt (one URL a line, # comments), .csv or .parquet (`url` column,
    optional `identity`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(f"URL list not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str)
        else:
            lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
            df = pd.DataFrame({"url": [ln for ln in lines if ln and not ln.startswith("#")]})
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read URL list {path}: {exc}") from exc
    if "url" not in df.columns:
        raise InputError(f"URL list {path} has no `url` column (columns: {', '.join(map(str, df.columns))})")
    df = df[df["url"].notna() & (df["url"].astype(str).str.strip() != "")]
    if df.empty:
        raise InputError(f"URL list {path} holds no URLs")
    identity = df["identity"] if "identity" in df.columns else pd.Series([None] * len(df), index=df.index)
    return [{"url": str(u).strip(), "identity": None if pd.isna(i) else str(i)} for u, i in zip(df["url"], identity)]


def _archive_rows(url: str, folder: Path, rejected: list[tuple[str, str]], config: AcquireConfig) -> list[dict]:
    rows = [
        manifest.row(url=f"{url}#{name}", source_page=url, status="failed", reason=reason) for name, reason in rejected
    ]
    files = local.list_files(folder)
    root = archives.content_root(folder)
    checked = local.inspect_files(
        [str(f) for f in files], local_workers(config), config.shard_size, config.progress, "checking images"
    )
    inside = [f for f in files if f.is_relative_to(root)]
    people = dict(zip(inside, local.identities(inside, root, config.identity)))
    for f, r in zip(files, checked):
        r.update(
            url=f"{url}#{f.relative_to(folder).as_posix()}", source_page=url, mtime_ns=None, identity=people.get(f)
        )
        rows.append(r)
    return rows


def local_workers(config: AcquireConfig) -> int:
    """Processes for local work (decoding, extracting): at most one per CPU."""
    return min(config.workers, default_workers())


def acquired_whole(raw: Path, url: str) -> bool:
    """Whether the image or archive at `url` is in the raw set already, whole: images recorded,
    every one still on disk, and no member that failed with a read error (an extraction cut short
    or disturbed leaves those). Anything less is fetched or extracted again on a rerun."""
    known = store.known_rows(raw)
    mine = known[(known["url"] == url) | (known["source_page"] == url)]
    ok = mine[mine["status"] == "ok"]
    unreadable = (mine["status"] == "failed") & mine["reason"].fillna("").str.startswith("unreadable")
    return len(ok) > 0 and ok["path"].map(lambda p: bool(p) and Path(p).is_file()).all() and not unreadable.any()


def acquire_url(
    url: str, raw: Path, config: AcquireConfig, checksum: tuple[str, str] | None, log: Log = lambda _m: None
) -> list[dict]:
    """Fetch one URL into `raw`: an image is stored, an archive is verified and extracted
    safely. Returns its manifest rows. Any failure raises DownloadError and keeps the raw set as
    it was (this is the whole request)."""
    if acquired_whole(raw, url):
        log(f"{url} was acquired before: nothing to download")
        return []
    downloads = raw / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    part = downloads / f"{hashlib.sha1(url.encode()).hexdigest()[:16]}.part"
    sess = http.session(config)
    try:
        digests = http.download_file(sess, url, part, config, log)
    except http.FetchFailed as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from exc
    finally:
        sess.close()
    try:
        if (
            "drive.google.com" in url
            and archives.sniff(part) is None
            and isinstance(manifest.check_image(part.read_bytes()[: config.max_bytes]), str)
        ):
            raise DownloadError(presets.GOOGLE_DRIVE_REFUSED)
        if checksum and digests[checksum[0]].lower() != checksum[1].lower():
            raise DownloadError(
                f"checksum mismatch for {url}: expected {checksum[0]} {checksum[1].lower()}, got {digests[checksum[0]]}"
            )
        if archives.sniff(part) is None:
            return [_store_single(url, part, raw, config)]
        log(f"{url}: {digests['bytes']} bytes, sha256 {digests['sha256']}")
        return ingest_archive(part, url, raw, config, log)
    finally:
        part.unlink(missing_ok=True)


def ingest_archive(archive: Path, url: str, raw: Path, config: AcquireConfig, log: Log = lambda _m: None) -> list[dict]:
    """Extract `archive` safely into raw/<name>/images/<archive>-<hash>/ (via a staging folder
    renamed when complete) and return one manifest row per member, labelled `<url>#<member>`."""
    kind = archives.sniff(archive)
    if kind is None:
        raise InputError(f"{archive} is not a zip or tar archive")
    key = f"{local.default_name(_stem(url) or 'archive')[:80]}-{hashlib.sha1(url.encode()).hexdigest()[:8]}"
    staging, final = raw / f".staging-{key}", raw / "images" / key
    log(f"extracting {kind} archive {url}")
    rejected = archives.extract(archive, staging, config.max_archive_bytes, config.max_archive_files)
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(final)
    return _archive_rows(url, final, rejected, config)


def import_archive_file(raw: Path, config: AcquireConfig, log: Log = lambda _m: None) -> list[dict]:
    """A local zip/tar given to --path: extracted like a downloaded archive (once)."""
    path = config.path
    url = Path(path).resolve().as_uri()
    if acquired_whole(raw, url):
        log(f"{path} was imported before: nothing to do")
        return []
    return ingest_archive(Path(path), url, raw, config, log)


def _store_single(url: str, part: Path, raw: Path, config: AcquireConfig) -> dict:
    data = part.read_bytes()
    checked = manifest.check_image(data)
    if isinstance(checked, str):
        raise DownloadError(f"{url} is neither an image nor a zip/tar archive ({checked})")
    if len(data) > config.max_bytes:
        raise DownloadError(f"{url}: image of {len(data)} bytes exceeds --max-bytes {config.max_bytes}")
    dl = store.Downloader(raw, config)
    sha = manifest.sha256_bytes(data)
    status, path = dl.store(data, sha, checked[2])
    row = manifest.row(url=url, status=status, sha256=sha, bytes=len(data), width=checked[0], height=checked[1])
    row.update(path=path) if status == "ok" else row.update(reason=f"same content as {path}")
    return row


def finalize(raw: Path, extra_rows: list[dict] = ()) -> pd.DataFrame:
    """Merge manifest + journal + `extra_rows` (later wins per URL), mark duplicates, drop the
    stored copies of duplicate or invalid downloads, write the manifest, clear the journal."""
    rows = store.known_rows(raw).to_dict("records") + list(extra_rows)
    df = manifest.frame(rows)
    df = df.drop_duplicates("url", keep="last").reset_index(drop=True)
    df = manifest.mark_duplicates(df)
    if not (df["status"] == "ok").any():  # leave no raw set that crop could pick up empty-handed
        reasons = df["reason"].map(manifest.reason_key).value_counts()
        detail = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in reasons.items()) or "nothing found"
        transient = df["reason"].map(http.is_transient).any()
        failed = df[df["status"] == "failed"]
        if len(failed):
            detail += f"; e.g. {failed['url'].iloc[0] or failed['path'].iloc[0]}: {failed['reason'].iloc[0]}"
        raise DownloadError(
            f"no image could be acquired into {raw.name!r} ({detail})"
            + ("; rerun to retry the transient failures" if transient else "")
        )
    images = (raw / "images").resolve()
    kept = set(df.loc[df["status"] == "ok", "path"].dropna())
    drop = (df["status"] != "ok") & df["path"].notna()
    for i in df.index[drop]:
        path = Path(df.at[i, "path"])
        if str(path) not in kept and path.resolve().is_relative_to(images):
            path.unlink(missing_ok=True)
        df.at[i, "path"] = None
    os.sync()  # images were written without per-file fsync: make them durable before the manifest
    manifest.write_source(raw, WEB_SOURCE)
    manifest.write(df, raw)
    store.Journal(raw).clear()
    for staging in raw.glob(".staging-*"):
        shutil.rmtree(staging, ignore_errors=True)
    return df
