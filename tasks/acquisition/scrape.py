"""A polite crawler that collects image URLs: breadth-first from the start pages up to a link
depth and a page budget, only on allowed domains, obeying robots.txt (urllib.robotparser) for
pages and images, waiting a per-host delay between fetches, with a clear User-Agent. Images come
from <img src>, <img srcset>/<source srcset> and <link rel=image_src>."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from facegan.config.acquire import AcquireConfig
from facegan.config.errors import DownloadError
from facegan.tasks.acquisition import http


class PageParser(HTMLParser):
    """Links and image URLs of one HTML page (resolved against the page URL or <base href>)."""

    def __init__(self, base: str):
        super().__init__(convert_charrefs=True)
        self.base = base
        self.links: list[str] = []
        self.images: list[str] = []

    def _url(self, value: str | None) -> str | None:
        value = (value or "").strip()
        if not value or value.startswith(("data:", "javascript:", "mailto:", "#")):
            return None
        return urldefrag(urljoin(self.base, value))[0]

    def handle_starttag(self, tag: str, attrs) -> None:
        a = {k: v for k, v in attrs}
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        elif tag in ("a", "area"):
            self.links.append(self._url(a.get("href")))
        elif tag in ("img", "source"):
            self.images.append(self._url(a.get("src")))
            for candidate in (a.get("srcset") or "").split(","):
                self.images.append(self._url(candidate.strip().split(" ")[0]))
        elif tag == "link" and (a.get("rel") or "").lower() == "image_src":
            self.images.append(self._url(a.get("href")))
        self.links = [u for u in self.links if u]
        self.images = [u for u in self.images if u]


@dataclass
class CrawlResult:
    images: list[dict] = field(default_factory=list)  # {url, source_page}
    pages: int = 0
    skipped_robots: int = 0
    skipped_domain: int = 0
    failed_pages: list[tuple[str, str]] = field(default_factory=list)


class Crawler:
    def __init__(self, config: AcquireConfig, log: Callable[[str], None] = lambda _m: None):
        """Crawl with `config`'s HTTP settings and its per-host --delay."""
        self.config = config
        self.delay = config.delay
        self.log = log
        self.session = http.session(config)
        self.robots: dict[str, RobotFileParser] = {}
        self.last_fetch: dict[str, float] = {}
        self.robots_errors: dict[str, str] = {}

    def _wait(self, host: str) -> None:
        rp = self.robots.get(host)
        delay = max(self.delay, float((rp.crawl_delay(self.config.user_agent) if rp else 0) or 0))
        wait = self.last_fetch.get(host, 0.0) + delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_fetch[host] = time.monotonic()

    def allowed_by_robots(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.netloc
        if host not in self.robots:
            rp = RobotFileParser()
            robots_url = f"{parts.scheme}://{host}/robots.txt"
            try:
                self._wait(host)
                body, _ = http.fetch_bytes(self.session, robots_url, self.config)
                rp.parse(body.decode("utf-8", "replace").splitlines())
            except http.FetchFailed as exc:
                if str(exc).startswith("http 4"):
                    rp.parse([])  # no robots.txt: everything allowed
                else:
                    rp.parse(["User-agent: *", "Disallow: /"])  # unreachable: assume disallowed
                    self.robots_errors[host] = f"{robots_url}: {exc}"
            self.robots[host] = rp
        return self.robots[host].can_fetch(self.config.user_agent, url)

    def fetch_page(self, url: str) -> tuple[str, str]:
        self._wait(urlsplit(url).netloc)
        body, ctype = http.fetch_bytes(self.session, url, self.config)
        return body.decode("utf-8", "replace"), ctype

    def crawl(self, starts: list[str], depth: int, allow_domains: list[str] | None, max_pages: int) -> CrawlResult:
        if depth < 0:
            raise DownloadError("--depth must be >= 0")
        domains = {d.lower() for d in (allow_domains or [urlsplit(u).hostname or "" for u in starts])}

        def in_domain(u: str) -> bool:
            host = (urlsplit(u).hostname or "").lower()
            return host in domains or any(host.endswith("." + d) for d in domains)

        result, seen_pages, seen_images = CrawlResult(), set(starts), set()
        queue = deque((u, 0) for u in starts)
        while queue and result.pages < max_pages:
            url, d = queue.popleft()
            if urlsplit(url).scheme not in ("http", "https"):
                continue
            if not in_domain(url):
                result.skipped_domain += 1
                continue
            if not self.allowed_by_robots(url):
                result.skipped_robots += 1
                self.log(f"robots.txt disallows {url}")
                continue
            try:
                html, ctype = self.fetch_page(url)
            except http.FetchFailed as exc:
                result.failed_pages.append((url, str(exc)))
                continue
            result.pages += 1
            if "html" not in ctype.lower() and "<html" not in html[:1000].lower():
                continue
            parser = PageParser(url)
            parser.feed(html)
            for img in parser.images:
                if img in seen_images or urlsplit(img).scheme not in ("http", "https"):
                    continue
                seen_images.add(img)
                if not in_domain(img):
                    result.skipped_domain += 1
                elif not self.allowed_by_robots(img):
                    result.skipped_robots += 1
                else:
                    result.images.append({"url": img, "source_page": url})
            if d < depth:
                for link in parser.links:
                    if link not in seen_pages:
                        seen_pages.add(link)
                        queue.append((link, d + 1))
        self.session.close()
        if result.pages == 0:
            if result.failed_pages:
                url, reason = result.failed_pages[0]
                raise DownloadError(f"cannot fetch start page {url}: {reason}")
            if self.robots_errors:
                raise DownloadError(f"cannot reach {next(iter(self.robots_errors.values()))}")
            raise DownloadError(f"no page could be crawled from {', '.join(starts)} (robots.txt or --allow-domain)")
        return result
