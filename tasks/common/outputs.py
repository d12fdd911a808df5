"""Output folders of `facegan generate`: never mix the faces of two requests in one folder.

A folder written by generate holds generate.json, the request that filled it (generator, n,
seed). Writing into a folder is allowed when it is new, empty, or holds exactly that request (a
rerun, or the resume of a killed one, rewrites the same faces); anything else is refused. Light
imports only: the CLI checks --out before any server starts."""

from __future__ import annotations

import json
from pathlib import Path

from facegan.config.errors import InputError

REQUEST_FILE = "generate.json"


def read_request(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / REQUEST_FILE).read_text())
    except (OSError, ValueError):
        return None


def refusal(folder: Path, request: dict) -> str | None:
    """Why faces of `request` cannot be written into `folder` (None: they can)."""
    folder = Path(folder)
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == folder else f"is inside {parent}, a file"
                return f"{folder} {what}, not a folder: give --out a folder for the faces"
            break
    if not folder.is_dir():
        return None
    entries = [p for p in folder.iterdir() if p.name != REQUEST_FILE and not p.name.startswith(".")]
    previous = read_request(folder)
    if previous == request or (not entries and previous is None):
        return None
    if previous is not None:
        return (
            f"{folder} already holds {previous.get('n')} faces of {previous.get('run')} (seed "
            f"{previous.get('seed')}): pick a new or empty --out folder"
        )
    return f"{folder} is not empty ({len(entries)} entries): pick a new or empty --out folder"


def check_folder(folder: Path, request: dict) -> Path:
    reason = refusal(folder, request)
    if reason:
        raise InputError(f"--out {reason}")
    return Path(folder)


def free_folder(base: Path, request: dict) -> Path:
    """`base`, or base-2, base-3, ... : the first that is new, empty or holds this request."""
    candidate, k = Path(base), 1
    while refusal(candidate, request):
        k += 1
        candidate = Path(f"{base}-{k}")
    return candidate


def claim(folder: Path, request: dict) -> Path:
    """Create the folder and record the request (before any face is written)."""
    from facegan.tasks.common.atomic import write_text

    folder.mkdir(parents=True, exist_ok=True)
    if read_request(folder) != request:
        write_text(folder / REQUEST_FILE, json.dumps(request, indent=1))
    return folder
