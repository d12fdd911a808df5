"""The polite crawler on a small loopback site: depth, allowed domains, robots.txt, src + srcset."""

from __future__ import annotations

import pandas as pd

from facegan.config.acquire import AcquireConfig
from facegan.flows.acquire import acquire
from facegan.testing import LoopbackServer, Route
from tests.conftest import shared

HTML = "text/html; charset=utf-8"


def _site(photos: list[bytes], port_hint: str) -> dict[str, Route]:
    page = lambda body: Route(f"<html><body>{body}</body></html>".encode(), HTML)  # noqa: E731
    routes = {
        "/robots.txt": Route(b"User-agent: *\nDisallow: /private/\n", "text/plain"),
        "/index.html": page(
            '<img src="/img/a.jpg"><img srcset="/img/b.jpg 1x, /img/c.png 2x" alt="">'
            '<img src="/private/hidden.jpg"><img src="data:image/gif;base64,R0lGOD">'
            f'<img src="http://localhost:{port_hint}/img/offdomain.jpg">'
            '<a href="/p1.html#top">next</a> <a href="/private/secret.html">secret</a>'
            f'<a href="http://localhost:{port_hint}/elsewhere.html">off-domain</a>'
        ),
        "/p1.html": page(
            '<picture><source srcset="/img/d.jpg"><img src="img/e.jpg"></picture>'
            '<a href="/p2.html">deeper</a> <a href="/index.html">home</a>'
        ),
        "/p2.html": page('<img src="/img/deep.jpg">'),
        "/private/secret.html": page('<img src="/img/secret.jpg">'),
        "/elsewhere.html": page('<img src="/img/elsewhere.jpg">'),
    }
    names = ["a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg", "deep.jpg", "secret.jpg", "offdomain.jpg", "elsewhere.jpg"]
    for name, data in zip(names, photos):
        routes[f"/img/{name}"] = Route(data, "image/png" if name.endswith(".png") else "image/jpeg")
    routes["/private/hidden.jpg"] = Route(photos[-1])
    return routes


def test_crawl_collects_exactly_the_allowed_images(facegan_home):
    files = sorted(shared("photos", "face_recognition").glob("*.jp*g"))[:10]
    photos = [p.read_bytes() for p in files]
    with LoopbackServer() as srv:
        srv.routes.update(_site(photos, str(srv.port)))
        result = acquire(
            AcquireConfig(
                scrape=[srv.url("/index.html")], depth=1, delay=0.0, timeout=5, retries=0, progress=False, name="site"
            )
        )
        counts = dict(srv.counts)
    df = pd.read_parquet(facegan_home / "raw" / "site" / "manifest.parquet")
    got = {u.rsplit("/", 1)[1] for u in df["url"]}
    assert got == {"a.jpg", "b.jpg", "c.png", "d.jpg", "e.jpg"}
    assert set(df["status"]) == {"ok"} and result.ok == 5
    pages = dict(zip(df["url"].str.rsplit("/", n=1).str[1], df["source_page"].str.rsplit("/", n=1).str[1]))
    assert pages["a.jpg"] == "index.html" and pages["d.jpg"] == "p1.html"
    # never fetched: robots-disallowed pages/images, pages beyond --depth, the off-domain host
    for path in (
        "/private/secret.html",
        "/private/hidden.jpg",
        "/p2.html",
        "/img/deep.jpg",
        "/img/secret.jpg",
        "/elsewhere.html",
        "/img/offdomain.jpg",
        "/img/elsewhere.jpg",
    ):
        assert counts.get(path, 0) == 0, path
    assert counts["/robots.txt"] == 1 and counts["/index.html"] == 1
    from facegan.tasks.common import tracking

    metrics = tracking.get_run(result.run_id).data.metrics
    assert metrics["pages_crawled"] == 2 and metrics["skipped_robots"] >= 2 and metrics["ok"] == 5
