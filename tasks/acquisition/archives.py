"""Archives (zip, tar, tar.gz/bz2/xz), told apart by their first bytes, extracted SAFELY:
entries with absolute paths, '..' components, links, devices are rejected (and listed with
their reason); total bytes and file count are capped (decompression bombs). Images are then
checked like any other file (Pillow's pixel limit stays on)."""

from __future__ import annotations

import lzma
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from facegan.config.errors import DownloadError

MAGIC = [
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "tar"),
    (b"BZh", "tar"),
    (b"\xfd7zXZ\x00", "tar"),
]


def sniff(path: Path) -> str | None:
    """'zip' or 'tar' when `path` is such an archive (judged by content), else None."""
    with open(path, "rb") as fh:
        return sniff_bytes(fh.read(512))


def sniff_bytes(head: bytes) -> str | None:
    """'zip' or 'tar' when these first bytes (512 suffice) start such an archive, else None."""
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _bad_name(name: str) -> str | None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return f"unsafe path: absolute path {name!r}"
    if ".." in pure.parts:
        return f"unsafe path: '..' component in {name!r}"
    return None


class _Caps:
    def __init__(self, max_bytes: int, max_files: int):
        self.max_bytes, self.max_files, self.bytes, self.files = max_bytes, max_files, 0, 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise DownloadError(f"archive holds more than {self.max_files} files (--max-archive-files)")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise DownloadError(f"archive expands to more than {self.max_bytes} bytes (--max-archive-bytes)")


def _copy(src, target: Path, caps: _Caps) -> None:
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            caps.add_bytes(len(chunk))
            out.write(chunk)


def _extract_tar(archive: Path, dest: Path, caps: _Caps) -> list[tuple[str, str]]:
    rejected = []
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            caps.add_file()
            reason = _bad_name(member.name)
            if reason is None and (member.issym() or member.islnk()):
                link = PurePosixPath(member.linkname)
                base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
                inside = not link.is_absolute() and ".." not in (base / link).parts and _inside(dest, base / link)
                reason = (
                    "link not extracted: points inside the archive"
                    if inside
                    else f"unsafe link: {member.name!r} points outside the target ({member.linkname!r})"
                )
            if reason is None and not (member.isreg() or member.isdir()):
                reason = "special file not extracted (device, fifo)"
            if reason:
                rejected.append((member.name, reason))
                continue
            target = dest / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            src = tar.extractfile(member)
            _copy(src, target, caps)
    return rejected


def _inside(dest: Path, rel: PurePosixPath) -> bool:
    root = dest.resolve()
    return (root / rel).resolve().is_relative_to(root)


def _extract_zip(archive: Path, dest: Path, caps: _Caps) -> list[tuple[str, str]]:
    rejected = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            caps.add_file()
            reason = _bad_name(info.filename)
            if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                reason = f"unsafe link: {info.filename!r} is a symlink (not extracted)"
            if reason:
                rejected.append((info.filename, reason))
                continue
            target = dest / info.filename.replace("\\", "/")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as src:
                _copy(src, target, caps)
    return rejected


def extract(archive: Path, dest: Path, max_bytes: int, max_files: int) -> list[tuple[str, str]]:
    """Extract `archive` into the new folder `dest` (removed again on any failure). Returns the
    rejected entries as (name, reason)."""
    kind = sniff(archive)
    if kind is None:
        raise DownloadError(f"{archive.name} is not a zip or tar archive")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    caps = _Caps(max_bytes, max_files)
    try:
        return (_extract_zip if kind == "zip" else _extract_tar)(archive, dest, caps)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise DownloadError(f"corrupt {kind} archive: {exc}") from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def content_root(folder: Path) -> Path:
    """The folder itself, or its single top-level subfolder (img_align_celeba/, lfw-deepfunneled/)."""
    entries = [p for p in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
