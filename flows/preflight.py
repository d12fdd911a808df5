"""Checks `facegan` runs on a command's config before anything heavy happens: before Prefect,
MLflow or torch are imported, before a temporary Prefect server starts, before an MLflow run opens
and before any folder is created. A rejected command therefore answers in about a second and
leaves nothing behind.

Light imports only (pydantic configs, facegan.tasks.common.paths, facegan.tasks.acquisition.sources,
facegan.tasks.cropping.request, facegan.tasks.training.inputs, facegan.tasks.common.outputs, numpy
for a dataset's header); tests/test_first_day.py checks that a rejected command imported none of
prefect, mlflow or torch. Each check is one function that the flows call too, for runs started
without the CLI (deployments).

Each check returns notes for the user (printed to stderr before the command runs) or raises a
FaceganError (one `facegan: error:` line, exit 2)."""

from __future__ import annotations

from pathlib import Path

from facegan.config.errors import InputError, NotFoundError


def acquire(config) -> list[str]:
    from facegan.tasks.acquisition.sources import check_acquire
    from facegan.tasks.common import locks

    name = check_acquire(config)  # a raw set another process is acquiring into: refused here
    locks.check_free(locks.raw_lock(name), locks.acquiring(name))
    return []


def crop(config) -> list[str]:
    from facegan.tasks.common import locks
    from facegan.tasks.cropping.request import check_request

    request = check_request(config)
    # a crop into a dataset another process is writing: refused here (the flow takes the lock itself)
    locks.check_free(locks.dataset_lock(request.name), locks.cropping(request.name))
    return [] if config.raw else [f"crop: raw set {request.raw!r} (the most recent; --raw NAME to pick another)"]


def train(config) -> list[str]:
    from facegan.tasks.common import locks
    from facegan.tasks.training.inputs import check_training_set

    checked = check_training_set(config)
    run_name = config.run_name(checked.name)  # a run another process is training: refused here
    locks.check_free(locks.run_lock(run_name), locks.training(run_name))
    notes = []
    if not config.dataset:
        notes.append(
            f"train: dataset {checked.name!r} at {config.size} px, {checked.crops} crops (the most recent; "
            "--dataset NAME to pick another)"
        )
    return notes


def check_generator_ref(ref: str, flag: str = "--run") -> None:
    """A checkpoint/generator file must exist and a bare word must be a training run's name or
    look like an MLflow run id (32 hex digits); run ids and models:/ URIs are checked by MLflow."""
    import re

    from facegan.tasks.common.paths import named_run_id, run_names, runs_root

    ref = ref.strip()
    if ref.startswith("models:/"):
        name, _, version = ref[len("models:/") :].partition("/")
        if not name or (version and version != "latest" and not version.isdigit()):
            raise InputError(f"{flag} {ref!r}: a registered model is models:/<name>/<version>")
        return
    path = Path(ref).expanduser()
    if ref.endswith(".pt") or "/" in ref:
        if not path.is_file():
            raise NotFoundError(f"{flag} {ref!r}: no such checkpoint file" + _best_hint(path))
    elif named_run_id(ref) is None and not re.fullmatch(r"[0-9a-f]{32}", ref) and not path.is_file():
        names = run_names()
        known = f"the newest: {', '.join(names[-5:])}" if names else "none yet"
        raise NotFoundError(
            f"{flag} {ref!r}: no training run of that name under {runs_root()} ({known}) and not an MLflow run id"
        )


def _best_hint(path: Path) -> str:
    """best.pt is written only by scored runs (DCGAN, from step 500): point at what exists."""
    folder = path.parent
    if path.name == "best.pt" and folder.is_dir():
        steps = sorted(folder.glob("step-*.pt"))
        if steps:
            return (
                f" (best.pt exists only for runs scored during training; this run has {steps[-1].name}, "
                "or pass its MLflow run id)"
            )
    return ""


def generate(config) -> list[str]:
    from facegan.tasks.common import outputs

    check_generator_ref(config.run)
    if config.out is not None:
        outputs.check_folder(
            Path(config.out).expanduser(), {"run": config.run.strip(), "n": config.n, "seed": config.seed}
        )
    return []


def evaluate(config) -> list[str]:
    for ref in config.run:
        check_generator_ref(ref)
    return []


def pipeline(config) -> list[str]:
    from facegan.tasks.acquisition.sources import check_pipeline_source
    from facegan.tasks.common import locks

    name, _ = check_pipeline_source(config)
    locks.check_free(locks.raw_lock(name), locks.acquiring(name))
    return []


def ui(config) -> list[str]:
    import os
    import socket

    from facegan.tasks.common.paths import data_home

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store = data_home() / "mlflow.db"
        if not store.is_file():
            raise NotFoundError(
                f"no MLflow store at {store}: nothing tracked yet (run a facegan command "
                "first, or set FACEGAN_HOME or MLFLOW_TRACKING_URI)"
            )
        with socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET) as probe:
            try:
                probe.bind((config.host, config.port))
            except OSError as exc:
                raise InputError(
                    f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): pick another --port"
                ) from None
    return []


def prefect_api_url() -> str | None:
    """PREFECT_API_URL from the environment, else from the active Prefect profile (read without
    importing Prefect)."""
    import os
    import tomllib

    url = os.environ.get("PREFECT_API_URL", "").strip()
    if url:
        return url
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        data = tomllib.loads(profiles.read_text())
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    return (data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or "").strip() or None


SERVER_HINT = "start one with `.venv/bin/prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`"


def serve(config) -> list[str]:
    import urllib.request

    url = prefect_api_url()
    if not url:
        raise InputError(
            "facegan serve needs a Prefect server that `prefect deployment run` and the UI can "
            f"reach, and PREFECT_API_URL is not set: {SERVER_HINT} (without it the deployments "
            "would live in a temporary server that nothing else can reach)"
        )
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise InputError(
            f"no Prefect server answers at PREFECT_API_URL={url} ({getattr(exc, 'reason', exc)}): {SERVER_HINT}"
        ) from None
    return []


def app(config) -> list[str]:
    import os

    from facegan.tasks.common.paths import data_home

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store = data_home() / "mlflow.db"
        if not store.is_file():  # the page would otherwise create an empty store where it is started
            raise NotFoundError(
                f"no MLflow store at {store}: no model registered yet (train one with "
                "`facegan train`, or set FACEGAN_HOME or MLFLOW_TRACKING_URI)"
            )
    return []


def check_home() -> None:
    """FACEGAN_HOME must be a folder, or a path where one can be made (its nearest existing
    ancestor a writable folder)."""
    import os

    from facegan.tasks.common.paths import data_home

    given = os.environ.get("FACEGAN_HOME")
    shown = f"FACEGAN_HOME={given}" if given else "FACEGAN_HOME (unset: ./facegan-data)"
    home = data_home()
    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == home else f"cannot be made: {existing} is a file"
        raise InputError(f"{shown} {what}, not a folder: point FACEGAN_HOME at a folder (made when missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{shown}: {existing} is not writable: point FACEGAN_HOME at a folder you can write")


TRACKING_PROBE_TIMEOUT = 3.0  # seconds; MLflow's own client retries an unreachable server for minutes


def check_tracking_uri() -> None:
    """An MLFLOW_TRACKING_URI server must answer now (MLflow's client would retry it for over two
    minutes); a sqlite store's folder must exist."""
    import os
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=TRACKING_PROBE_TIMEOUT):
                pass
        except urllib.error.HTTPError:
            pass  # something answers (a proxy, an older server without /health): MLflow will say more
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            reason = getattr(reason, "strerror", None) or reason
            raise InputError(
                f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers ({reason}): start it, or "
                "unset MLFLOW_TRACKING_URI to track in $FACEGAN_HOME/mlflow.db"
            ) from None
    elif scheme == "sqlite" and uri.startswith("sqlite:///") and ":memory:" not in uri:
        folder = Path(uri[len("sqlite:///") :].split("?", 1)[0]).expanduser().parent
        if not folder.is_dir():
            raise InputError(f"MLFLOW_TRACKING_URI={uri}: folder {folder} does not exist")


NO_PREFECT = ("app", "ui")  # commands that run no Prefect flow


def local_prefect_api() -> str:
    """Where `prefect server start` listens: PREFECT_SERVER_API_HOST/PORT, else 127.0.0.1:4200."""
    import os

    host = os.environ.get("PREFECT_SERVER_API_HOST", "").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    port = os.environ.get("PREFECT_SERVER_API_PORT", "").strip() or "4200"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/api"


def reuse_local_prefect_server() -> list[str]:
    """With no PREFECT_API_URL (environment or profile), a Prefect server answering at the local
    address of `prefect server start` is used instead of a temporary one, whose start costs every
    command seconds (and a few hundred MB while it runs)."""
    import json
    import os
    import urllib.request

    if prefect_api_url():
        return []
    url = local_prefect_api()
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as resp:
            healthy = json.loads(resp.read(100) or b"null") is True
    except (OSError, ValueError):
        return []
    if not healthy:
        return []
    os.environ["PREFECT_API_URL"] = url
    return [f"prefect: using the Prefect server running at {url} (not a temporary one)"]


CHECKS = {
    "acquire": acquire,
    "crop": crop,
    "train": train,
    "generate": generate,
    "evaluate": evaluate,
    "pipeline": pipeline,
    "ui": ui,
    "serve": serve,
    "app": app,
}


def check(command: str, config) -> list[str]:
    check_home()
    check_tracking_uri()
    # before the command's own check: `facegan serve` accepts a running local server too
    reused = reuse_local_prefect_server() if command not in NO_PREFECT else []
    step = CHECKS.get(command)
    return (step(config) if step else []) + reused
