"""The raw set's manifest (raw/<name>/manifest.parquet): one row per file or URL, and the
image check every source shares: decode fully with Pillow (pixel limit on), hash the bytes.

Columns (the crop stage reads rows with status == 'ok'):
    path, url, source_page, status ('ok'|'duplicate'|'failed'), reason, sha256, width, height,
    bytes, identity, mtime_ns (local imports only: lets a rerun skip unchanged files)
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from facegan.tasks.acquisition.sources import SOURCE_FILE
from facegan.tasks.common.atomic import write_parquet, write_text
from facegan.tasks.common.paths import MANIFEST


@dataclass(frozen=True)
class RawSet:
    """A raw set just written: its name, folder and manifest, the counts of stats(), and how many
    files an import found unchanged since the last one (local folders)."""

    name: str
    raw_dir: str
    manifest: str
    stats: dict[str, Any]
    reused: int = 0


COLUMNS = [
    "path",
    "url",
    "source_page",
    "status",
    "reason",
    "sha256",
    "width",
    "height",
    "bytes",
    "identity",
    "mtime_ns",
]
_DTYPES = {"width": "Int64", "height": "Int64", "bytes": "Int64", "mtime_ns": "Int64"}


def row(**values: Any) -> dict:
    out = {c: None for c in COLUMNS}
    out.update(values)
    return out


def frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    for col in COLUMNS:
        if col in _DTYPES:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(_DTYPES[col])
        else:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def check_image(data: bytes) -> tuple[int, int, str] | str:
    """(width, height, format) when `data` fully decodes as an image within Pillow's pixel limit,
    else the failure reason."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit and width * height > limit:
                return f"too many pixels: {width}x{height} exceeds Pillow's limit of {limit}"
            im.load()
            return width, height, im.format or ""
    except Image.DecompressionBombError as exc:
        return f"too many pixels: {exc}"
    except Image.UnidentifiedImageError:
        return "not an image: cannot be decoded"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text or isinstance(exc, EOFError):
            return f"truncated image: {text}"
        return f"not an image: {text[:200]}"
    except Exception as exc:  # any other decoder failure means the file is not usable
        return f"not an image: {type(exc).__name__}: {str(exc)[:200]}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reason_key(reason: str | None) -> str:
    """'http 500: Internal Server Error' -> 'http_500' (for stats)."""
    head = (reason or "unknown").split(":", 1)[0].strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", head).strip("_") or "unknown"


def mark_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Among rows with status ok/duplicate, one per sha256 is 'ok' (the first that holds a file,
    else the first), the others 'duplicate' (their reason names the kept file)."""
    df = df.copy()
    good = df["status"].isin(["ok", "duplicate"]) & df["sha256"].notna()
    candidates = df[good]
    by_preference = candidates.assign(_no_file=candidates["path"].isna()).sort_values("_no_file", kind="stable")
    first = df.index.isin(by_preference.drop_duplicates("sha256").index)
    kept = df[good & first].set_index("sha256")
    keeper = kept["path"].where(kept["path"].notna(), kept["url"])
    dup = good & ~first
    df.loc[good & first, "status"] = "ok"
    df.loc[good & first, "reason"] = None
    df.loc[dup, "status"] = "duplicate"
    df.loc[dup, "reason"] = ["same content as " + str(keeper.get(s)) for s in df.loc[dup, "sha256"]]
    return df


def stats(df: pd.DataFrame, seconds: float | None = None) -> dict[str, float]:
    ok = df["status"] == "ok"
    out = {
        "files": float(len(df)),
        "ok": float(ok.sum()),
        "duplicates": float((df["status"] == "duplicate").sum()),
        "failed": float((df["status"] == "failed").sum()),
        "bytes": float(df.loc[ok, "bytes"].fillna(0).sum()),
    }
    for key, count in df.loc[df["status"] == "failed", "reason"].map(reason_key).value_counts().items():
        out[f"failed_{key}"] = float(count)
    if seconds is not None:
        out["seconds"] = round(seconds, 3)
        out["images_per_s"] = round(len(df) / seconds, 2) if seconds > 0 else 0.0
    return out


def read(raw: Path) -> pd.DataFrame | None:
    path = Path(raw) / MANIFEST
    if not path.is_file():
        return None
    df = pd.read_parquet(path)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    return frame(df[COLUMNS].to_dict("records"))


def write(df: pd.DataFrame, raw: Path) -> Path:
    return write_parquet(frame(df.to_dict("records")), Path(raw) / MANIFEST)


def read_source(raw: Path) -> dict | None:
    path = Path(raw) / SOURCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_source(raw: Path, info: dict) -> None:
    write_text(Path(raw) / SOURCE_FILE, json.dumps(info, indent=1))
