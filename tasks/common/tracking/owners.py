"""Which process a RUNNING run belongs to, so that a run whose process died without saying so
(SIGKILL, a power cut, a full disk that stopped its last status write) does not show as running
for ever: every run is tagged with its host and process, and the next run started or resumed on
that host marks such orphans KILLED."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mlflow.tracking import MlflowClient

HOST_TAG = "facegan.host"
PROCESS_TAG = "facegan.process"  # "<pid>:<start time in clock ticks since boot>" (Linux), else "<pid>:"
ENDED_TAG = "facegan.ended"
ORPHAN_NOTE = "its process died without finishing the run (found by a later facegan command)"


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name ([] where there is no /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def owner_tags() -> dict[str, str]:
    """The tags that name this process as a run's owner."""
    pid = os.getpid()
    stat = _stat(pid)
    return {HOST_TAG: socket.gethostname(), PROCESS_TAG: f"{pid}:{stat[19] if len(stat) > 19 else ''}"}


def is_alive(process: str) -> bool:
    """Whether the process a PROCESS_TAG names still runs (a reused pid with another start time,
    or a zombie, is not it). Unreadable values count as alive: never end a run on a guess."""
    pid_text, _, started = process.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    stat = _stat(pid)
    if not stat:
        return True
    return stat[0] != "Z" and (not started or stat[19] == started)


def end_orphans(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose process is gone; their ids."""
    found = client.search_runs(
        [experiment_id],
        f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{socket.gethostname()}'",
        max_results=500,
    )
    orphans = [r.info.run_id for r in found if not is_alive(r.data.tags.get(PROCESS_TAG, ""))]
    for run_id in orphans:
        client.set_tag(run_id, ENDED_TAG, ORPHAN_NOTE)
        client.set_terminated(run_id, "KILLED")
    return orphans
