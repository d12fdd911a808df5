"""Where a raw set's images come from: the checks and names that need no download and no heavy
import (no pandas, requests or Prefect), so `facegan` can reject a bad source at once, before any
server starts, any MLflow run opens or any folder is created.

    raw_set_name(config)        the raw set name an AcquireConfig writes to
    check_source(path)          a folder or a zip/tar archive, else NotFoundError/InputError
    check_url(url, flag)        an http(s) URL with a host, else InputError
    check_claim(name, info)     raw/<name> holds no images of another kind of source
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from facegan.config.errors import InputError, NotFoundError
from facegan.tasks.common.paths import raw_dir

SOURCE_FILE = "source.json"
WEB_SOURCE = {"kind": "web"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")


def default_name(text: str, fallback: str = "images") -> str:
    """A raw set name (facegan.tasks.common.paths.check_name rules) made from a folder, file or host name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:100]
    return name if name else fallback


def stem(url: str) -> str:
    """The last path segment of a URL without its archive or image suffix (else the host)."""
    leaf = PurePosixPath(urlsplit(url).path).name
    for suffix in ARCHIVE_SUFFIXES + (".jpg", ".jpeg", ".png", ".gif", ".webp"):
        if leaf.lower().endswith(suffix):
            return leaf[: -len(suffix)]
    return leaf or (urlsplit(url).hostname or "")


def check_folder(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise NotFoundError(f"folder not found: {root}")
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    return root.resolve()


def check_source(path: str | Path) -> Path:
    """A folder to import, or a local zip/tar archive to extract."""
    from facegan.tasks.acquisition.archives import sniff

    source = Path(path).expanduser()
    if source.is_file():
        try:
            kind = sniff(source)
        except OSError as exc:
            raise InputError(f"cannot read {source}: {exc.strerror or exc}") from None
        if kind is None:
            raise InputError(f"not a folder or a zip/tar archive: {source}")
        return source.resolve()
    return check_folder(source)


def _any_file(root: Path) -> bool:
    """Whether `root` holds a file outside hidden folders (stops at the first)."""
    import os

    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(Path(folder, n).is_file() for n in names):
            return True
    return False


def check_url(url: str, flag: str = "--url") -> str:
    """An http or https URL with a host name (file://, ftp:// or a bare word are refused)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag} {url!r}: not an http(s) URL (a local folder or archive goes to --path)")
    return url.strip()


def raw_set_name(config) -> str:
    """The raw set an AcquireConfig writes to: --name, else derived from the source."""
    if config.name:
        return config.name
    if config.path:
        path = Path(config.path).expanduser()
        if path.is_dir():
            return default_name(path.name)
        return default_name(stem(path.resolve().as_uri()) or "archive")
    if config.preset:
        return config.preset
    if config.url:
        return default_name(stem(config.url) or "download")
    if config.url_list:
        return default_name(Path(config.url_list).stem)
    return default_name(urlsplit(config.scrape[0]).hostname or "scrape")


def read_source(raw: Path) -> dict | None:
    path = Path(raw) / SOURCE_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def describe(info: dict) -> str:
    return str(info.get("source") or ("downloads" if info.get("kind") == "web" else info.get("kind")))


def check_claim(name: str, info: dict) -> Path:
    """raw/<name>, refusing to mix a local folder import with another source under one name."""
    raw = raw_dir(name)
    existing = read_source(raw)
    if existing is not None and existing != info:
        raise InputError(f"raw set {name!r} already holds images from {describe(existing)}; choose another --name")
    return raw


def acquire_source_info(config) -> dict:
    """What source.json of the raw set will say for this AcquireConfig."""
    if config.path and Path(config.path).expanduser().is_dir():
        return {"kind": "path", "source": str(Path(config.path).expanduser().resolve())}
    return dict(WEB_SOURCE)


def check_acquire(config) -> str:
    """Everything about an acquire request that can be checked without downloading: the source
    exists (folder/archive) or is an http(s) URL, the URL list exists, the raw set name is valid
    and does not belong to another kind of source. Returns the raw set name."""
    from facegan.tasks.common.paths import check_name

    if config.path:
        source = check_source(config.path)
        if source.is_dir() and not _any_file(source):
            raise InputError(f"folder is empty: {source}")
    if config.url:
        check_url(config.url)
    for page in config.scrape or []:
        check_url(page, "--scrape")
    if config.url_list:
        listed = Path(config.url_list).expanduser()
        if not listed.is_file():
            raise NotFoundError(f"URL list not found: {listed}")
    name = check_name(raw_set_name(config))
    check_claim(name, acquire_source_info(config))
    return name


def _source_urls(raw: Path) -> set[str]:
    """The URLs (and archive URIs) a web raw set's manifest says its images came from."""
    import pyarrow.parquet as pq

    from facegan.tasks.common.paths import MANIFEST

    try:
        table = pq.read_table(Path(raw) / MANIFEST, columns=["url", "source_page"])
    except Exception:  # noqa: BLE001 - an unreadable manifest proves nothing
        return set()
    urls = set(table.column("url").to_pylist()) | set(table.column("source_page").to_pylist())
    return {u for u in urls if u}


def pipeline_source(config) -> tuple[str, str, dict]:
    """(kind, what, acquire fields) of a PipelineConfig's --source; checks it exists / is a URL.
    kind: preset, url or path; `what` is the URL or URI the images will be recorded under."""
    from facegan.tasks.acquisition import presets

    kind = config.source_kind()
    if kind == "preset":
        preset = config.source.lower()
        return kind, presets.get(preset).url, {"preset": preset}
    if kind == "url":
        url = check_url(config.source, "--source")
        return kind, url, {"url": url}
    path = Path(config.source).expanduser()
    if not path.exists():
        raise NotFoundError(
            f"--source {config.source!r}: no such folder or archive (give a preset: "
            "lfw or celeba, an http(s) URL, a folder or a zip/tar archive)"
        )
    path = check_source(path)
    if path.is_dir() and not _any_file(path):  # as `facegan acquire --path` checks it
        raise InputError(f"--source {config.source!r}: folder is empty: {path}")
    return kind, (str(path) if path.is_dir() else path.as_uri()), {"path": path}


def check_pipeline_source(config) -> tuple[str, bool]:
    """The raw set a pipeline acquires into, and whether it already holds this same source.
    A raw set of that name holding images of another source is refused: the pipeline never
    trains on old images in place of the ones asked for, and never mixes two sources."""
    from types import SimpleNamespace

    from facegan.tasks.common.paths import MANIFEST, check_name

    kind, what, fields = pipeline_source(config)
    fake = SimpleNamespace(
        **{"name": config.name, "path": None, "preset": None, "url": None, "url_list": None, "scrape": None, **fields}
    )
    name = check_name(raw_set_name(fake))
    raw = raw_dir(name)
    if not (raw / MANIFEST).is_file():
        check_claim(
            name, {"kind": "path", "source": what} if kind == "path" and Path(what).is_dir() else dict(WEB_SOURCE)
        )
        return name, False
    existing = read_source(raw) or {}
    if existing.get("kind") == "path":
        same = existing.get("source") == what
        held = existing.get("source")
    else:
        urls = _source_urls(raw)
        same = existing.get("kind") == "web" and what in urls
        held = ", ".join(sorted(urls)[:2]) + (", ..." if len(urls) > 2 else "") if urls else "another source"
    if not same:
        raise InputError(
            f"raw set {name!r} already holds images from {held}, not from {config.source}: "
            "pass another --name (the pipeline never reuses or mixes another source's images)"
        )
    return name, True
