"""A URL-list download killed with SIGKILL midway resumes: the rerun fetches only what was
missing and ends with every image stored once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from facegan.testing import LoopbackServer, Route, distinct_images
from tests.conftest import REPO, facegan_result, shared


def _distinct_flowers(n: int) -> list[bytes]:
    return distinct_images(shared("negatives", "flowers", "daisy"), n)


def _journaled_urls(raw) -> set[str]:
    urls = set()
    for path in (raw / ".journal").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                urls.add(json.loads(line)["url"])
            except (json.JSONDecodeError, KeyError):
                pass
    return urls


def test_sigkill_midway_then_rerun_downloads_only_the_rest(tmp_path, facegan_home, capfd):
    images = _distinct_flowers(120)
    routes = {f"/img/{i:04d}.jpg": Route(data) for i, data in enumerate(images)}
    raw = facegan_home / "raw" / "flowers"
    with LoopbackServer(routes, latency=0.05) as srv:
        listing = tmp_path / "urls.txt"
        listing.write_text("# flowers\n" + "\n".join(srv.url(p) for p in routes) + "\n")
        args = [
            "acquire",
            "--url-list",
            str(listing),
            "--name",
            "flowers",
            "--workers",
            "4",
            "--shard-size",
            "20",
            "--timeout",
            "5",
            "--no-progress",
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "facegan.flows.cli", *args],
            cwd=REPO,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while len(_journaled_urls(raw)) < 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = _journaled_urls(raw)
        assert 30 <= len(done_before) < len(routes), "the kill should land midway"
        assert not (raw / "manifest.parquet").exists()
        srv.counts.clear()
        srv.latency = 0.0
        code, _, err = facegan_result(capfd, *args)  # the rerun in-process (the killed run: its own process)
        assert code == 0, err[-3000:]
        refetched = set(srv.counts)
    assert sum(srv.counts.values()) == len(routes) - len(done_before)
    assert refetched == {p for p in routes if srv.url(p) not in done_before}
    df = pd.read_parquet(raw / "manifest.parquet")
    assert len(df) == len(routes) and set(df["status"]) == {"ok"}
    assert df["sha256"].is_unique and df["url"].is_unique
    stored = [p for p in (raw / "images").rglob("*") if p.is_file()]
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in stored) == sorted(df["sha256"])
    assert not list(raw.rglob("*.part")) and not list((raw / ".journal").glob("*.jsonl"))


def test_archive_download_killed_midway_resumes_with_a_range_request(tmp_path, facegan_home):
    import io
    import tarfile

    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire

    lfw_like = io.BytesIO()
    with tarfile.open(fileobj=lfw_like, mode="w:gz") as tf:
        for i, data in enumerate(_distinct_flowers(120)):
            info = tarfile.TarInfo(f"faces/Person_{i % 6}/Person_{i % 6}_{i:04d}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    body = lfw_like.getvalue()
    route = Route(body, "application/gzip", trickle=0.3, ranges=True)
    raw = facegan_home / "raw" / "faces"
    with LoopbackServer({"/faces.tgz": route}) as srv:
        args = ["acquire", "--url", srv.url("/faces.tgz"), "--no-progress"]
        log = open(tmp_path / "killed.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "facegan.flows.cli", *args],
            cwd=REPO,
            env=dict(os.environ),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180

        def part():
            return next(iter((raw / ".downloads").glob("*.part")), None) if raw.exists() else None

        while time.monotonic() < deadline and proc.poll() is None:
            if part() and part().stat().st_size >= 1 << 16:  # at least one 64 kB block on disk
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kept = part().stat().st_size
        assert 0 < kept < len(body)
        route.trickle = 0.0
        result = acquire(AcquireConfig(url=srv.url("/faces.tgz"), progress=False, retries=0))
    assert srv.range_starts == [("/faces.tgz", kept)]  # only the missing bytes were fetched
    assert result.ok == 120 and result.name == "faces"
    df = pd.read_parquet(raw / "manifest.parquet")
    assert df["identity"].nunique() == 6 and not list(raw.rglob("*.part"))


def test_an_archive_imported_incompletely_is_extracted_again_on_a_rerun(tmp_path, facegan_home):
    """A rerun of a whole import does nothing; one whose images went missing, or whose members
    failed to read (what an extraction cut short or disturbed leaves: two imports at once once
    left 7,305 such rows), extracts the archive again instead of saying "nothing to do"."""
    import zipfile

    from facegan.config.acquire import AcquireConfig
    from facegan.flows.acquire import acquire
    from facegan.tasks.acquisition import manifest

    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, data in enumerate(_distinct_flowers(30)):
            zf.writestr(f"faces/Person_{i % 3}/Person_{i % 3}_{i:04d}.jpg", data)
    config, raw = AcquireConfig(path=archive, name="kept", progress=False), facegan_home / "raw" / "kept"

    def images() -> dict[str, int]:
        rows = manifest.read(raw)
        assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]
        return {p: os.stat(p).st_ino for p in rows["path"]}

    assert acquire(config).ok == 30
    first = images()
    assert acquire(config).ok == 30 and images() == first  # whole: nothing extracted again

    gone = sorted(first)[:2]
    for path in gone:
        os.unlink(path)
    assert acquire(config).ok == 30 and all(os.path.isfile(p) for p in images())

    rows = manifest.read(raw)
    broken = rows.index[:5]
    for i in broken:
        os.unlink(rows.at[i, "path"])
    rows.loc[broken, ["status", "reason", "path"]] = ["failed", "unreadable: No such file or directory", None]
    manifest.write(rows, raw)
    assert acquire(config).ok == 30 and len(images()) == 30
