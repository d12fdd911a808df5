"""Typed errors. Deep code raises these; the CLI turns them into one line and exit code 2."""


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
