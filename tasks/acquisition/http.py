"""HTTP for acquisition: one requests.Session per shard with urllib3 Retry (exponential backoff
on 5xx, 429 and connection errors), connect/read timeouts, streamed bodies with a byte cap, and
failures turned into short manifest reasons ('timeout: ...', 'http 404: ...'). The settings are
the AcquireConfig's own fields (--timeout, --retries, --backoff, --max-bytes, --user-agent,
--workers), read from the config itself."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from facegan.config.acquire import AcquireConfig

CHUNK = 1 << 16
TRANSIENT = ("timeout", "connection_error", "http_5", "http_429", "truncated_download")


class FetchFailed(Exception):
    """One URL could not be fetched; str(exc) is its manifest reason."""


def session(config: AcquireConfig, pool: int | None = None) -> requests.Session:
    """A session retrying as `config` says, with `pool` connections per host (default --workers)."""
    pool = pool or config.workers
    retry = Retry(
        total=config.retries,
        connect=config.retries,
        read=config.retries,
        status=config.retries,
        backoff_factor=config.backoff,
        backoff_max=30,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
        respect_retry_after_header=True,
        redirect=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool, pool_maxsize=pool)
    s = requests.Session()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["User-Agent"] = config.user_agent
    s.max_redirects = 10
    # requests re-reads proxy settings from the whole environment on every request (~1 ms each,
    # a third of the client's CPU per image): read the CA bundle once, and keep the per-request
    # lookup only when proxies or a .netrc are configured
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        s.verify = bundle
    s.trust_env = _proxies_or_netrc()
    return s


def _proxies_or_netrc() -> bool:
    import urllib.request

    return bool(urllib.request.getproxies() or os.environ.get("NETRC") or Path("~/.netrc").expanduser().exists())


def is_transient(reason: str | None) -> bool:
    from facegan.tasks.acquisition.manifest import reason_key

    return reason_key(reason).startswith(TRANSIENT)


def _reason(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, requests.TooManyRedirects):
        return f"redirect loop: {text[:150]}"
    if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        return f"timeout: {text[:150]}"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return f"truncated download: {text[:150]}"
    if isinstance(
        exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)
    ):
        return f"bad url: {text[:150]}"
    if isinstance(exc, requests.ConnectionError):
        host = urlsplit(getattr(exc.request, "url", "") or "").netloc
        for marker, say in (
            ("NameResolution", "cannot resolve host"),
            ("Connection refused", "refused by"),
            ("Network is unreachable", "network unreachable for"),
            ("No route to host", "no route to"),
        ):
            if marker in text:
                return f"connection error: {say} {host}"
        return f"connection error: {text[:150]}"
    return f"download error: {type(exc).__name__}: {text[:150]}"


def _open(sess: requests.Session, url: str, config: AcquireConfig, headers: dict | None = None):
    try:
        resp = sess.get(url, stream=True, timeout=(config.timeout, config.timeout), headers=headers)
    except Exception as exc:
        raise FetchFailed(_reason(exc)) from exc
    if resp.status_code >= 400:
        resp.close()
        raise FetchFailed(f"http {resp.status_code}: {resp.reason or ''}".strip())
    return resp


def fetch_bytes(sess: requests.Session, url: str, config: AcquireConfig) -> tuple[bytes, str]:
    """The body of `url` (at most --max-bytes) and its content type."""
    resp = _open(sess, url, config)
    with resp:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > config.max_bytes:
            raise FetchFailed(f"too large: {declared} bytes > max {config.max_bytes}")
        buf = bytearray()
        try:
            for chunk in resp.iter_content(CHUNK):
                buf += chunk
                if len(buf) > config.max_bytes:
                    raise FetchFailed(f"too large: more than max {config.max_bytes} bytes")
        except FetchFailed:
            raise
        except Exception as exc:
            raise FetchFailed(_reason(exc)) from exc
        return bytes(buf), resp.headers.get("Content-Type", "")


def download_file(
    sess: requests.Session,
    url: str,
    part: Path,
    config: AcquireConfig,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, str]:
    """Stream `url` into `part` (resuming a partial file with an HTTP Range request when the server
    allows it), at most --max-archive-bytes. Returns the file's sha256 and md5. Raises FetchFailed
    and removes `part`; a process killed midway leaves `part` for the next run to resume."""
    max_bytes = config.max_archive_bytes
    have = part.stat().st_size if part.exists() else 0
    resp = _open(sess, url, config, {"Range": f"bytes={have}-"} if have else None)
    with resp:
        resumed = (
            have and resp.status_code == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {have}-")
        )
        if have and not resumed:
            have = 0
        elif resumed:
            log(f"resuming {url} at byte {have}")
        declared = resp.headers.get("Content-Length")
        total = have + int(declared) if declared and declared.isdigit() else None
        if total and total > max_bytes:
            raise FetchFailed(f"too large: {total} bytes > max {max_bytes}")
        sha, md5 = hashlib.sha256(), hashlib.md5()
        if have:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
                    md5.update(block)
        size = have
        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            desc="downloading",
            disable=not config.progress,
            mininterval=1.0,
        )
        try:
            with open(part, "ab" if have else "wb") as out:
                for chunk in resp.iter_content(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchFailed(f"too large: more than max {max_bytes} bytes")
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except Exception as exc:  # a failed download leaves nothing behind (a killed one is resumed)
            part.unlink(missing_ok=True)
            raise exc if isinstance(exc, FetchFailed) else FetchFailed(_reason(exc)) from exc
        finally:
            bar.close()
        if total and size != total:
            part.unlink(missing_ok=True)
            raise FetchFailed(f"truncated download: got {size} of {total} bytes")
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest(), "bytes": str(size)}
