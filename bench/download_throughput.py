"""Download throughput: facegan's downloader vs a sequential `requests.get` loop (what the seed
did), both fetching the same 600 real images from a loopback server that adds 20 ms latency per
image (a stand-in for a remote host). The images are the flower photos of ../shared/data
(FACEGAN_SHARED_DATA); nothing needs to be passed. Both write every image to disk; facegan also decodes,
hashes, dedupes and journals each one.

    .venv/bin/python bench/download_throughput.py [--n 600] [--latency 0.02] [--workers 16]

Last line: `ratio: X.XX` (facegan images/s over sequential images/s). Goal >= 10.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import requests

from facegan.config.acquire import AcquireConfig
from facegan.tasks.acquisition import store
from facegan.testing import Route, SubprocessServer, distinct_images

REPO = Path(__file__).resolve().parents[1]

SHARED = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data"))


def flower_images(n: int) -> list[bytes]:
    if not (SHARED / "negatives" / "flowers").is_dir():
        raise SystemExit(
            f"download_throughput: {SHARED / 'negatives' / 'flowers'} not found "
            "(set FACEGAN_SHARED_DATA to the shared data folder)"
        )
    images = distinct_images(SHARED / "negatives" / "flowers", n)
    if len(images) < n:
        raise SystemExit(f"only {len(images)} distinct images under {SHARED}/negatives/flowers")
    return images


def sequential(urls: list[str], out: Path) -> float:
    started = time.perf_counter()
    for i, url in enumerate(urls):
        resp = requests.get(url, timeout=20)
        resp.raise_for_status()
        (out / f"{i:06d}.jpg").write_bytes(resp.content)
    return time.perf_counter() - started


def facegan(urls: list[str], raw: Path, workers: int, shard_size: int) -> tuple[float, int]:
    """The acquire flow's download path without Prefect's per-run startup: shards of URLs, each
    downloaded by a bounded thread pool (the flow runs up to 4 shards at once)."""
    from concurrent.futures import ThreadPoolExecutor

    listing = raw.parent / "urls.txt"  # what `facegan acquire --url-list` would be given
    listing.write_text("\n".join(urls) + "\n")
    config = AcquireConfig(url_list=listing, timeout=20, retries=3, workers=workers, shard_size=shard_size)
    started = time.perf_counter()
    downloader = store.Downloader(raw, config)
    items = downloader.pending([{"url": u} for u in urls])
    shards = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    parallel = min(4, len(shards))
    with ThreadPoolExecutor(parallel) as pool:
        rows = [
            r
            for shard in pool.map(lambda s: downloader.download(s, max(1, workers // parallel)), shards)
            for r in shard
        ]
    downloader.journal.close()
    return time.perf_counter() - started, sum(r["status"] == "ok" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--workers", type=int, default=16, help="facegan's --workers (its default)")
    ap.add_argument("--shard-size", type=int, default=200, help="facegan's --shard-size (its default)")
    args = ap.parse_args()
    images = flower_images(args.n)
    routes = {f"/img/{i:05d}.jpg": Route(data) for i, data in enumerate(images)}
    with SubprocessServer(routes, latency=args.latency) as srv, tempfile.TemporaryDirectory() as tmp:
        urls = [srv.url(p) for p in routes]
        (Path(tmp) / "seq").mkdir()
        t_seq = sequential(urls, Path(tmp) / "seq")
        t_fg, ok = facegan(urls, Path(tmp) / "raw", args.workers, args.shard_size)
        assert ok == len(urls), f"facegan stored {ok} of {len(urls)} images"
    seq_rate, fg_rate = len(urls) / t_seq, len(urls) / t_fg
    print(f"images: {len(urls)} distinct real JPEGs, server latency {args.latency * 1000:.0f} ms per image")
    print(f"sequential requests.get loop: {t_seq:.2f} s, {seq_rate:.1f} images/s")
    print(
        f"facegan downloader ({args.workers} workers, validated + deduped + journaled): "
        f"{t_fg:.2f} s, {fg_rate:.1f} images/s"
    )
    print(f"ratio: {fg_rate / seq_rate:.2f}")


if __name__ == "__main__":
    main()
