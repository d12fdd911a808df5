"""Typed errors. Deep code raises these; the CLI turns them into one line and exit code 2. And
what counts as an interrupt: Ctrl-C, or SIGTERM (exit 130 and 143, one line, runs marked KILLED)."""

import sys


class FaceganError(Exception):
    """A problem the user can fix (bad input, missing data, bad parameter)."""


class InputError(FaceganError):
    """A path, file or parameter given by the user is unusable."""


class NotFoundError(FaceganError):
    """A raw set, dataset, run or checkpoint that was asked for does not exist."""


class DownloadError(FaceganError):
    """A download failed in a way that stops the whole request (not a single bad URL)."""


class TrainingError(FaceganError):
    """Training cannot continue (e.g. a NaN loss); the last good checkpoint is kept."""


TERMINATED = "terminated (SIGTERM)"


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the same cleanup (runs marked KILLED, servers stopped)."""


def as_interrupt(exc: BaseException) -> KeyboardInterrupt | None:
    """A Ctrl-C or SIGTERM as the KeyboardInterrupt the CLI reports, else None. While a flow runs,
    Prefect's own SIGTERM handler raises its TerminationSignal (not a KeyboardInterrupt) where the
    signal lands, and only afterwards passes the signal on to the CLI's handler."""
    if isinstance(exc, KeyboardInterrupt):
        return exc
    prefect_exceptions = sys.modules.get("prefect.exceptions")  # not imported: it cannot be Prefect's
    if prefect_exceptions is not None and isinstance(exc, prefect_exceptions.TerminationSignal):
        return Interrupted(TERMINATED)
    return None
