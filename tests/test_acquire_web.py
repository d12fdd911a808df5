"""Web acquisition against a real loopback server: failure injection, unsafe archives, bad input."""

from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from conftest import facegan_result, shared

from facegan.config.acquire import AcquireConfig
from facegan.config.errors import DownloadError
from facegan.flows.acquire import acquire
from facegan.testing import LoopbackServer, Route

FAST = dict(timeout=0.5, retries=2, backoff=0.01, workers=4, progress=False)


def _photos(n: int, folder: str = "face_recognition") -> list[bytes]:
    files = sorted(p for p in shared("photos", folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p.read_bytes() for p in files[:n]]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_failure_injection_url_list(tmp_path, facegan_home):
    good = _photos(4)
    big = max(_photos(20, "deepface"), key=len)
    assert len(big) > max(map(len, good))
    routes = {
        "/ok0.jpg": Route(good[0]),
        "/ok1.jpg": Route(good[1]),
        "/ok2.png": Route(good[2], "image/png"),
        "/dup.jpg": Route(good[0]),  # same bytes as ok0
        "/flaky.jpg": Route(good[3], fail_first=1),  # 500 then success
        "/down.jpg": Route(b"err", "text/plain", status=500),  # persistent 500
        "/slow.jpg": Route(good[1], delay=3),  # slower than the timeout
        "/trunc.jpg": Route(good[2], truncate=True),  # body cut short
        "/page.jpg": Route(b"<html><body>not a photo</body></html>"),  # HTML served as image/jpeg
        "/big.jpg": Route(big),  # over --max-bytes
        "/loop1.jpg": Route(redirect="/loop2.jpg"),
        "/loop2.jpg": Route(redirect="/loop1.jpg"),
        "/gone.jpg": Route(b"", status=404),
    }
    with LoopbackServer(routes) as srv:
        listing = tmp_path / "urls.csv"
        pd.DataFrame(
            {"url": [srv.url(p) for p in routes if p != "/loop2.jpg"], "identity": ["person"] * (len(routes) - 1)}
        ).to_csv(listing, index=False)
        result = acquire(AcquireConfig(url_list=listing, name="inject", max_bytes=len(big) - 1, shard_size=4, **FAST))
        counts = dict(srv.counts)
    raw = facegan_home / "raw" / "inject"
    df = pd.read_parquet(raw / "manifest.parquet").set_index("url")
    status = {u.rsplit("/", 1)[1]: s for u, s in df["status"].items()}
    reason = {u.rsplit("/", 1)[1]: (r if isinstance(r, str) else "") for u, r in df["reason"].items()}
    # ok0 and dup hold the same bytes: whichever finished first is kept, the other is a duplicate
    assert sorted([status.pop("ok0.jpg"), status.pop("dup.jpg")]) == ["duplicate", "ok"]
    assert status == {
        "ok1.jpg": "ok",
        "ok2.png": "ok",
        "flaky.jpg": "ok",
        "down.jpg": "failed",
        "slow.jpg": "failed",
        "trunc.jpg": "failed",
        "page.jpg": "failed",
        "big.jpg": "failed",
        "loop1.jpg": "failed",
        "gone.jpg": "failed",
    }
    assert reason["down.jpg"].startswith("http 500") and counts["/down.jpg"] == 3  # 1 + 2 retries
    assert counts["/flaky.jpg"] == 2
    assert reason["slow.jpg"].startswith("timeout")
    assert reason["trunc.jpg"].startswith("truncated")
    assert reason["page.jpg"].startswith("not an image") and "image/jpeg" in reason["page.jpg"]
    assert reason["big.jpg"].startswith("too large")
    assert reason["loop1.jpg"].startswith("redirect loop")
    assert reason["gone.jpg"].startswith("http 404")
    assert result.ok == 4 and result.duplicates == 1 and result.failed == 7
    # every good image stored exactly once, byte for byte; nothing partial; nothing elsewhere
    stored = [p for p in _all_files(raw / "images")]
    assert sorted(_sha(p.read_bytes()) for p in stored) == sorted(_sha(b) for b in good)
    ours = [p for p in _all_files(facegan_home) if "mlartifacts" not in p.parts]  # MLflow's own store
    lock = facegan_home / "raw" / ".locks" / "inject.lock"  # the raw set's one-writer lock (kept, empty)
    assert {p.name for p in ours} == {p.name for p in stored} | {"manifest.parquet", "source.json", lock.name}
    assert lock.read_text() == ""
    ok = df[df["status"] == "ok"]
    assert all(_sha(Path(p).read_bytes()) == s for p, s in zip(ok["path"], ok["sha256"]))
    assert set(df["identity"]) == {"person"}


def _zip_with_traversal(photos: list[bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/Ann/Ann_0001.jpg", photos[0])
        zf.writestr("set/Ben/Ben_0001.jpg", photos[1])
        zf.writestr("set/Ben/copy.jpg", photos[1])
        zf.writestr("set/readme.txt", "not an image")
        zf.writestr("../../zip-escape.jpg", photos[2])
        zf.writestr("set/../../../zip-escape2.jpg", photos[2])
    return buf.getvalue()


def _tar_with_escapes(photos: list[bytes], outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in [
            ("set/Cid/Cid_0001.jpg", photos[2]),
            ("set/Cid/Cid_0002.jpg", photos[3]),
            (str(outside), photos[0]),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("set/Cid/escape.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../../../etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("set/hard.jpg")
        hard.type, hard.linkname = tarfile.LNKTYPE, str(outside)
        tf.addfile(hard)
    return buf.getvalue()


def test_unsafe_archives_extract_only_safe_members(tmp_path, facegan_home):
    photos = _photos(4)
    outside = Path("/tmp") / f"facegan-escape-{uuid.uuid4().hex}.jpg"
    zdata, tdata = _zip_with_traversal(photos), _tar_with_escapes(photos, outside)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", b"\0" * 5_000_000)  # 5 MB from a few kB
    routes = {
        "/faces.zip": Route(zdata, "application/zip"),
        "/faces.tgz": Route(tdata, "application/gzip"),
        "/bomb.zip": Route(bomb.getvalue(), "application/zip"),
    }
    with LoopbackServer(routes) as srv:
        first = acquire(
            AcquireConfig(url=srv.url("/faces.zip"), sha256=_sha(zdata), name="arch", identity="folder", **FAST)
        )
        second = acquire(AcquireConfig(url=srv.url("/faces.tgz"), name="arch", identity="folder", **FAST))
        again = acquire(AcquireConfig(url=srv.url("/faces.tgz"), name="arch", identity="folder", **FAST))
        assert srv.counts["/faces.tgz"] == 1  # the rerun found it done
        before = (facegan_home / "raw" / "arch" / "manifest.parquet").read_bytes()
        with pytest.raises(DownloadError, match="more than 3 files"):  # decompression-bomb cap
            acquire(
                AcquireConfig(
                    url=srv.url("/faces.zip") + "?again", name="arch", max_archive_files=3, identity="folder", **FAST
                )
            )
        with pytest.raises(DownloadError, match="expands to more than 1000000 bytes"):
            acquire(
                AcquireConfig(
                    url=srv.url("/bomb.zip"), name="arch", max_archive_bytes=1_000_000, identity="folder", **FAST
                )
            )
        assert (facegan_home / "raw" / "arch" / "manifest.parquet").read_bytes() == before
    raw = facegan_home / "raw" / "arch"
    df = pd.read_parquet(raw / "manifest.parquet")
    member = df["url"].str.split("#").str[1]
    rows = dict(zip(member, df.to_dict("records")))
    assert first.ok == 2 and second.ok == 4 and again.ok == 4
    assert rows["set/Ann/Ann_0001.jpg"]["identity"] == "Ann" and rows["set/Cid/Cid_0002.jpg"]["identity"] == "Cid"
    assert rows["set/Ben/copy.jpg"]["status"] == "duplicate"
    assert rows["../../zip-escape.jpg"]["reason"].startswith("unsafe path")
    assert rows["set/../../../zip-escape2.jpg"]["reason"].startswith("unsafe path")
    assert rows[str(outside)]["reason"].startswith("unsafe path: absolute")
    assert rows["set/Cid/escape.jpg"]["reason"].startswith("unsafe link")
    assert rows["set/hard.jpg"]["status"] == "failed"
    assert rows["set/readme.txt"]["reason"].startswith("not an image")
    assert not outside.exists()
    assert not list(tmp_path.parent.rglob("zip-escape*")) and not list(facegan_home.rglob("*escape*"))
    # only the 4 distinct good photos remain on disk (the duplicate and the text file were dropped)
    kept = _all_files(raw / "images")
    assert sorted(_sha(p.read_bytes()) for p in kept) == sorted(_sha(b) for b in photos)
    assert not list(raw.glob(".staging-*")) and not list(raw.rglob("*.part"))


def test_bad_input_one_line_and_earlier_downloads_intact(tmp_path, capfd, facegan_home):
    photos = _photos(2)
    zdata = _zip_with_traversal(_photos(4))
    routes = {
        "/a.jpg": Route(photos[0]),
        "/b.zip": Route(zdata, "application/zip"),
        "/": Route(b"<html></html>", "text/html"),
    }
    with LoopbackServer(routes) as srv:
        acquire(AcquireConfig(url=srv.url("/a.jpg"), name="keep", **FAST))
        raw = facegan_home / "raw" / "keep"
        before = {p: p.read_bytes() for p in _all_files(raw)}
        no_url = tmp_path / "list.csv"
        no_url.write_text("link,identity\nhttp://example.org/a.jpg,x\n")
        cases = {
            "unreachable": (["--url", "http://127.0.0.1:9/x.jpg"], "cannot download"),
            "no url column": (["--url-list", no_url], "has no `url` column"),
            "checksum": (["--url", srv.url("/b.zip"), "--sha256", "0" * 64], "checksum mismatch"),
            "depth": (["--scrape", srv.url("/"), "--depth", "-1"], "--depth"),
        }
        for label, (args, message) in cases.items():
            # in-process (test_first_day runs acquire's own process)
            code, _, err = facegan_result(capfd, "acquire", *args, "--name", "keep", "--retries", "0", "--timeout", "2")
            lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
            assert code == 2, (label, err[-2000:])
            assert len(lines) == 1 and message in lines[0], (label, err[-2000:])
            assert "Traceback" not in err, label
    after = {p: p.read_bytes() for p in _all_files(raw)}
    assert after == before


def test_unreachable_sources_leave_no_raw_set(tmp_path, facegan_home):
    from facegan.tasks.common.paths import resolve_raw

    listing = tmp_path / "dead.txt"
    listing.write_text("".join(f"http://127.0.0.1:9/{i}.jpg\n" for i in range(3)))
    with pytest.raises(DownloadError, match="none of the 3 URLs could be reached"):
        acquire(AcquireConfig(url_list=listing, **{**FAST, "retries": 0}))
    with pytest.raises(DownloadError, match="cannot reach"):
        acquire(AcquireConfig(scrape=["http://127.0.0.1:9/index.html"], delay=0, **{**FAST, "retries": 0}))
    assert not list(facegan_home.glob("raw/*/manifest.parquet"))
    with pytest.raises(Exception, match="no raw image sets"):
        resolve_raw(None)


@pytest.mark.no_prefect
def test_help_documents_sources_and_the_google_drive_caveat():
    from facegan.flows.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["acquire"]
    text = sub.format_help()
    for flag in (
        "--path",
        "--url",
        "--sha256",
        "--url-list",
        "--preset",
        "--scrape",
        "--depth",
        "--workers",
        "--timeout",
        "--retries",
        "--max-bytes",
        "--max-archive-files",
        "--allow-domain",
        "--delay",
    ):
        assert flag in text
    assert "Google Drive" in text and "(default: 16)" in text


def test_local_archive_via_path(tmp_path, facegan_home):
    photos = _photos(4)
    archive = tmp_path / "people.tar.gz"
    archive.write_bytes(_tar_with_escapes(photos, Path("/tmp") / f"facegan-escape-{uuid.uuid4().hex}.jpg"))
    first = acquire(AcquireConfig(path=archive, progress=False))
    again = acquire(AcquireConfig(path=archive, progress=False))
    assert first.name == "people" and first.ok == 2 and again.ok == 2
    df = pd.read_parquet(facegan_home / "raw" / "people" / "manifest.parquet")
    ok = df[df["status"] == "ok"]
    assert set(ok["identity"]) == {"Cid"} and all(Path(p).is_file() for p in ok["path"])
    assert df["url"].str.startswith(archive.resolve().as_uri() + "#").all()


def test_rerun_restores_a_deleted_download_without_duplicating(tmp_path, facegan_home):
    photo = _photos(1)[0]
    with LoopbackServer({"/a.jpg": Route(photo), "/same.jpg": Route(photo)}) as srv:
        listing = tmp_path / "urls.txt"
        listing.write_text(f"{srv.url('/a.jpg')}\n{srv.url('/same.jpg')}\n")
        acquire(AcquireConfig(url_list=listing, name="redo", **FAST))
        raw = facegan_home / "raw" / "redo"
        first = pd.read_parquet(raw / "manifest.parquet")
        keeper = first.loc[first["status"] == "ok", "url"].iloc[0].rsplit("/", 1)[1]  # whichever came first
        stored = _all_files(raw / "images")
        assert len(stored) == 1
        stored[0].unlink()  # the user deletes the image
        result = acquire(AcquireConfig(url_list=listing, name="redo", **FAST))
        assert srv.counts[f"/{keeper}"] == 2 and sum(srv.counts.values()) == 3
    assert result.ok == 1 and result.duplicates == 1
    df = pd.read_parquet(raw / "manifest.parquet")
    ok = df[df["status"] == "ok"]
    assert len(ok) == 1 and Path(ok["path"].iloc[0]).read_bytes() == photo
    assert [p.read_bytes() for p in _all_files(raw / "images")] == [photo]
