"""Where downloaded images go and how a rerun knows what is done.

- Content store: raw/<name>/images/<sha[:2]>/<sha256>.<ext>, written atomically; the first URL
  with some content stores it, later URLs with the same bytes become 'duplicate' rows.
- Journal: raw/<name>/.journal/*.jsonl, one manifest row per finished URL, appended as it
  finishes, so a killed run loses nothing it completed; the manifest is rebuilt from it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from facegan.config.acquire import AcquireConfig
from facegan.tasks.acquisition import archives, http, manifest

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}


def write_image(path: Path, data: bytes) -> None:
    """Atomic against crashes and kills (temp name + rename, as tasks/common/atomic.py, whose temp names
    clean_partials() removes), but without a per-file fsync: that costs ~4 ms per image here and
    would cap a 16-worker download at a few hundred images/s. The manifest write (finalize) is
    preceded by one os.sync(), and a rerun re-downloads any journaled file whose size is off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Journal:
    """Append-only log of finished rows (one JSON line each; a torn last line is ignored)."""

    def __init__(self, raw: Path):
        self.folder = Path(raw) / ".journal"
        self.lock = threading.Lock()
        self._fh = None

    def append(self, row: dict) -> None:
        line = (json.dumps(row, default=str) + "\n").encode()
        with self.lock:
            if self._fh is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self)}.jsonl"
                self._fh = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._fh, line)

    def close(self) -> None:
        with self.lock:
            if self._fh is not None:
                os.close(self._fh)
                self._fh = None

    def rows(self) -> list[dict]:
        out = []
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []:
            for line in path.read_text(errors="replace").splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # torn by a kill
        return out

    def clear(self) -> None:
        self.close()
        for path in self.folder.glob("*.jsonl") if self.folder.is_dir() else []:
            path.unlink(missing_ok=True)


def known_rows(raw: Path) -> pd.DataFrame:
    """Every row recorded so far: the manifest, then journal rows (later rows win per URL)."""
    old = manifest.read(raw)
    rows = (old.to_dict("records") if old is not None else []) + Journal(raw).rows()
    df = manifest.frame(rows)
    keyed = df["url"].notna()
    return pd.concat([df[~keyed], df[keyed].drop_duplicates("url", keep="last")], ignore_index=True)


def _intact(path, size) -> bool:
    try:
        return bool(path) and os.stat(path).st_size == size
    except OSError:
        return False


class Downloader:
    """Downloads image URLs into a raw set: validated, deduplicated, journaled. Thread-safe;
    shared by the shard tasks of one acquire run."""

    def __init__(self, raw: Path, config: AcquireConfig):
        self.raw = Path(raw)
        self.config = config
        self.journal = Journal(self.raw)
        self.lock = threading.Lock()
        self.bar = None  # an optional shared tqdm bar, advanced once per finished URL
        done = known_rows(self.raw)
        ok = done[(done["status"] == "ok") & done["path"].notna()]
        self.by_sha = {s: p for s, p, n in zip(ok["sha256"], ok["path"], ok["bytes"]) if _intact(p, n)}
        finished = done[done["url"].notna()]
        self.done = {
            u
            for u, st, r, p, n in zip(
                finished["url"], finished["status"], finished["reason"], finished["path"], finished["bytes"]
            )
            if (st == "duplicate") or (st == "ok" and _intact(p, n)) or (st == "failed" and not http.is_transient(r))
        }

    def pending(self, items: Iterable[dict]) -> list[dict]:
        seen, out = set(), []
        for item in items:
            if item["url"] not in self.done and item["url"] not in seen:
                seen.add(item["url"])
                out.append(item)
        return out

    def store(self, data: bytes, sha: str, fmt: str = "") -> tuple[str, str | None]:
        """('ok', path) for new content, ('duplicate', kept path) for content already stored."""
        with self.lock:
            kept = self.by_sha.get(sha)
            if kept:
                return "duplicate", kept
            path = self.raw / "images" / sha[:2] / f"{sha}.{EXTENSIONS.get(fmt, fmt.lower() or 'img')}"
            self.by_sha[sha] = str(path)
        try:
            write_image(path, data)
        except BaseException:
            with self.lock:
                self.by_sha.pop(sha, None)
            raise
        return "ok", str(path)

    def fetch_one(self, sess, item: dict) -> dict:
        base = dict(url=item["url"], source_page=item.get("source_page"), identity=item.get("identity"))
        try:
            data, ctype = http.fetch_bytes(sess, item["url"], self.config)
        except http.FetchFailed as exc:
            return manifest.row(**base, status="failed", reason=str(exc))
        sha = manifest.sha256_bytes(data)
        checked = manifest.check_image(data)
        if isinstance(checked, str):
            kind = archives.sniff_bytes(data[:512])
            if kind is not None:  # a list holds images; an archive is fetched (and extracted) by --url
                checked = (
                    f"archive, not an image: a {kind} archive; URL lists hold images only: "
                    f"fetch it with `facegan acquire --url {item['url']}`"
                )
            elif ctype:
                checked += f" (served as {ctype.split(';')[0]})"
            return manifest.row(**base, status="failed", reason=checked, sha256=sha, bytes=len(data))
        status, path = self.store(data, sha, checked[2])
        row = manifest.row(**base, status=status, sha256=sha, bytes=len(data), width=checked[0], height=checked[1])
        if status == "duplicate":
            row.update(reason=f"same content as {path}")
        else:
            row.update(path=path)
        return row

    def download(self, items: list[dict], threads: int) -> list[dict]:
        """Download `items` ({url, source_page?, identity?}) with a bounded thread pool; every
        finished row is journaled at once."""
        sess = http.session(self.config, pool=max(threads, 1))

        def one(item: dict) -> dict:
            row = self.fetch_one(sess, item)
            self.journal.append(row)
            if self.bar is not None:
                self.bar.update(1)
            return row

        try:
            with ThreadPoolExecutor(max_workers=max(1, min(threads, len(items) or 1))) as pool:
                return list(pool.map(one, items))
        finally:
            sess.close()
