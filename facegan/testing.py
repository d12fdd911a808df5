"""Support shared by the tests and the benches (bench/), importable wherever facegan is
installed: a real HTTP server on 127.0.0.1 and the first photos of the LFW archive. No project
imports (a leaf, outside the layers).

The server: routes map a path to a behaviour; every request is counted per path (`server.counts`).
    Route(body, ctype)                      200 with the body
    Route(body, fail_first=2)               500 twice, then 200
    Route(status=500)                       always that status
    Route(body, delay=5)                    waits before answering (slower than a timeout)
    Route(body, truncate=True)              announces the full length, sends half, hangs up
    Route(redirect="/a")                    302 to another path
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    ctype: str = "image/jpeg"
    status: int = 200
    fail_first: int = 0
    delay: float = 0.0
    truncate: bool = False
    redirect: str | None = None
    trickle: float = 0.0  # seconds to wait after each 64 kB of body
    ranges: bool = False  # honour `Range: bytes=N-` with 206 Partial Content


class LoopbackServer:
    def __init__(self, routes: dict[str, Route] | None = None, latency: float = 0.0):
        self.routes: dict[str, Route] = dict(routes or {})
        self.latency = latency  # added to every non-HTML response
        self.counts: collections.Counter = collections.Counter()
        self.range_starts: list[tuple[str, int]] = []  # (path, first byte) of every 206 answer
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # http.server writes headers and body separately: without TCP_NODELAY a reused
                # keep-alive connection stalls ~40 ms per response (Nagle + delayed ACK)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.counts[path] += 1
                    n = server.counts[path]
                route = server.routes.get(path)
                if route is None:
                    return self._send(404, b"not found", "text/plain")
                if route.delay:
                    time.sleep(route.delay)
                if server.latency and not route.ctype.startswith("text/"):
                    time.sleep(server.latency)
                if route.redirect:
                    self.send_response(302)
                    self.send_header("Location", route.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if n <= route.fail_first:
                    return self._send(500, b"try again", "text/plain")
                if route.truncate:
                    self.send_response(200)
                    self.send_header("Content-Type", route.ctype)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    self.wfile.write(route.body[: len(route.body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                wanted = self.headers.get("Range", "")
                if route.ranges and wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[6:-1])
                    with server.lock:
                        server.range_starts.append((path, start))
                    extra = {"Content-Range": f"bytes {start}-{len(route.body) - 1}/{len(route.body)}"}
                    return self._send(206, route.body[start:], route.ctype, extra, route.trickle)
                self._send(route.status, route.body, route.ctype, trickle=route.trickle)

            def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None, trickle: float = 0.0):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    step = 1 << 16 if trickle else max(len(body), 1)
                    for i in range(0, len(body), step):
                        self.wfile.write(body[i : i + step])
                        if trickle:
                            time.sleep(trickle)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 256
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class SubprocessServer:
    """The same server in a child process, so that its CPU work does not share the client's GIL
    (as a real remote host would not). No request counts."""

    def __init__(self, routes: dict[str, Route], latency: float = 0.0):
        import multiprocessing

        self._ctx = multiprocessing.get_context("fork")
        self._port = self._ctx.Queue()
        self._proc = self._ctx.Process(target=self._run, args=(routes, latency, self._port), daemon=True)

    @staticmethod
    def _run(routes, latency, port_queue) -> None:
        with LoopbackServer(routes, latency) as srv:
            port_queue.put(srv.port)
            srv.thread.join()

    def __enter__(self) -> SubprocessServer:
        self._proc.start()
        self.port = self._port.get(timeout=30)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        self._proc.join(10)


def distinct_images(folder, n: int) -> list[bytes]:
    """The first n images (by content) of the .jpg files under `folder`, sorted by path."""
    import hashlib
    from pathlib import Path

    seen, out = set(), []
    for path in sorted(Path(folder).rglob("*.jpg")):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(data)
            if len(out) == n:
                break
    return out


def extract_lfw_subset(tgz, dest, limit: int, skip_people: int = 0):
    """The first `limit` photos of the published LFW tgz (`tgz`, lfw-deepfunneled.tgz) after
    `skip_people` people, extracted under `dest` in their original layout
    lfw-deepfunneled/<Name>/<Name>_NNNN.jpg; returns `dest` (a Path)."""
    import tarfile
    from pathlib import Path

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    people: list[str] = []
    taken = 0
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            person = member.name.split("/")[-2]
            if person not in people:
                people.append(person)
            if len(people) <= skip_people:
                continue
            tar.extract(member, dest, filter="data")
            taken += 1
            if taken >= limit:
                break
    return dest


def lfw_photos(tgz, n: int, skip: int = 400):
    """(person, file stem, BGR image) of the `n` LFW photos after the first `skip` in the
    published tgz (the first 300 are the tests' lfw_crops fixture)."""
    import tarfile
    from pathlib import Path

    import cv2
    import numpy as np

    with tarfile.open(tgz, "r:gz") as tar:
        seen = 0
        for member in tar:
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            seen += 1
            if seen <= skip:
                continue
            data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
            yield member.name.split("/")[-2], Path(member.name).stem, cv2.imdecode(data, cv2.IMREAD_COLOR)
            if seen >= skip + n:
                return
