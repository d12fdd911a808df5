"""Shared test fixtures.

- Test files run in parallel (pytest-xdist, `-n auto --dist loadfile`): each worker is its own
  session, with everything below.
- One Prefect ephemeral server for the whole session (starting one takes ~8-11 s), started only
  when the first test that is not marked `no_prefect` runs; its URL is exported as
  PREFECT_API_URL so `facegan` subprocesses reuse it.
- One sqlite MLflow store for the session (MLFLOW_TRACKING_URI); FACEGAN_HOME per test.
- Real data from $FACEGAN_SHARED_DATA (default ../shared/data relative to the repo root).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# The Ctrl-C tests send SIGINT to the real command. A suite started in the background
# (`nohup .ci/run &`) inherits SIGINT *ignored*, and so would every command it starts (Python then
# installs no KeyboardInterrupt handler): restore Python's default, as in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEGAN_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data missing: {path}")
    return path


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: one worker per core this process may use (taskset included), at most 4: every
    worker starts its own Prefect server, and the trainings in the tests use all cores anyway."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


# The longest test files, longest first (as `--durations` ranks them on 2 cores)
LONGEST_FILES = (
    "test_deployments.py",
    "test_train.py",
    "test_crop_dask.py",
    "test_crop_byo.py",
    "test_evaluate_flow.py",
    "test_pipeline.py",
    "test_recipe.py",
)


@pytest.hookimpl(trylast=True)  # after pytest-randomly's shuffle, which stays the order within each group
def pytest_collection_modifyitems(items: list) -> None:
    """The longest files are handed out first, longest first (xdist gives a free worker the next
    file): the short ones fill the gaps at the end instead of a long file starting last and
    running alone. The other files keep pytest-randomly's order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder missing: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory):
    """One sqlite MLflow store for the session (cheap: nothing starts here)."""
    mlflow_dir = tmp_path_factory.mktemp("mlflow")
    saved = {
        k: os.environ.get(k)
        for k in (
            "MLFLOW_TRACKING_URI",
            "FACEGAN_MLFLOW_ARTIFACTS",
            "PREFECT_LOGGING_LEVEL",
            "PREFECT_SERVER_ANALYTICS_ENABLED",
        )
    }
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    os.environ["FACEGAN_MLFLOW_ARTIFACTS"] = str(mlflow_dir / "artifacts")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no internet: telemetry only logs errors
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_server(_session_env):
    """An ephemeral Prefect server for the whole session (starting one takes ~8-11 s), started by
    the first test that runs flows; its URL is exported as PREFECT_API_URL so `facegan`
    subprocesses reuse it."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):  # a loaded 2-core machine can take >2 min
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        yield os.environ["PREFECT_API_URL"]
    os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(autouse=True)
def _prefect_unless_marked(request):
    """Every test gets the session's Prefect server except those marked `no_prefect` (pure model,
    geometry and help tests): they do not pay for starting it."""
    if request.node.get_closest_marker("no_prefect") is None:
        request.getfixturevalue("prefect_server")


@pytest.fixture(autouse=True)
def facegan_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "facegan-home"
    monkeypatch.setenv("FACEGAN_HOME", str(home))
    return home


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, check: bool = False):
    """Run the real `facegan` command in a subprocess (as a user would)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "facegan.flows.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"facegan {' '.join(map(str, args))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


def run_facegan(capsys, *argv) -> tuple[int, str, str]:
    """The real `facegan` command in-process, through the CLI entry point: (exit code, stdout, stderr)."""
    from facegan.flows.cli import main as facegan

    try:
        facegan([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def facegan_result(capture, *argv, in_subprocess: bool = False) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one real `facegan` command with only its own output: in-process
    through facegan.flows.cli.main (no interpreter start; `capture` is capfd, so Prefect's log handlers
    are captured too), or in a subprocess to prove the console entry point itself."""
    if in_subprocess:
        proc = run_cli(*argv)
        return proc.returncode, proc.stdout, proc.stderr
    capture.readouterr()  # drop what the test printed before the command
    return run_facegan(capture, *argv)


def error_lines(err: str) -> list[str]:
    """The non-blank lines of a command's stderr (a rejected command must print exactly one)."""
    return [line for line in err.splitlines() if line.strip()]


def file_digests(folder: Path) -> dict[Path, str]:
    """Every file under folder with the SHA-256 of its bytes: equal before and after means untouched."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def env_without_servers(home: Path) -> dict:
    """This environment without the session's Prefect server and MLflow store, FACEGAN_HOME=home:
    a process started with it sees what a user's first command sees."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["FACEGAN_HOME"] = str(home)
    return env


def dlib_face_boxes() -> tuple[Path, dict[str, list[tuple[int, int, int, int]]]]:
    """dlib's hand-labelled group photos: (folder, {file: [(left, top, width, height), ...]})."""
    import xml.etree.ElementTree as ET

    root = shared("photos", "dlib_faces")
    truth: dict[str, list] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(root / xml).getroot().iter("image"):
            truth.setdefault(image.get("file"), []).extend(
                (int(b.get("left")), int(b.get("top")), int(b.get("width")), int(b.get("height")))
                for b in image.iter("box")
            )
    return root, truth


def extract_lfw_subset(dest: Path, limit: int, skip_people: int = 0) -> Path:
    """The first `limit` photos of the shared LFW tgz (after `skip_people` people), extracted
    in their original layout lfw-deepfunneled/<Name>/<Name>_NNNN.jpg (skipped without the tgz)."""
    from facegan.testing import extract_lfw_subset as extract

    return extract(shared("archives", "lfw-deepfunneled.tgz"), dest, limit, skip_people)


def _build_lfw_crops(root: Path) -> Path:
    """The real acquire and crop flows on 300 LFW photos into root/lfw-crops-home. Their MLflow
    runs go to that home's own store (home/mlflow.db, as for a user without MLFLOW_TRACKING_URI):
    the home is shared by the xdist workers, and each worker has its own session store."""
    from facegan.config.acquire import AcquireConfig
    from facegan.config.crop import CropConfig
    from facegan.flows.acquire import acquire
    from facegan.flows.crop import crop

    home = root / "lfw-crops-home"
    src = extract_lfw_subset(root / "lfw-src" / "lfw-sample", 300)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACEGAN_HOME", str(home))
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.delenv("FACEGAN_MLFLOW_ARTIFACTS", raising=False)
        acquire(AcquireConfig(path=src, name="lfw-sample"))
        crop(CropConfig(raw="lfw-sample", largest_only=True))
    return home


@pytest.fixture(scope="session")
def lfw_crops(tmp_path_factory, prefect_server) -> Path:
    """A data home holding crop dataset "lfw-sample" (48/64/128 px), made by the real acquire and
    crop flows from 300 LFW photos, built once per test run: the xdist workers share it (a file
    lock in the run's temp folder; the standard pytest-xdist recipe). Read-only for the tests;
    its acquire and crop runs are in its own MLflow store, home/mlflow.db. Tests use it with
    monkeypatch.setenv("FACEGAN_HOME", home)."""
    import shutil

    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # not under xdist: this session's own
        return _build_lfw_crops(tmp_path_factory.mktemp("lfw-crops"))
    root = tmp_path_factory.getbasetemp().parent / "lfw-crops"  # one per run, shared by its workers
    root.mkdir(exist_ok=True)
    done = root / "built"
    with FileLock(str(root / "build.lock")):
        if not done.exists():
            for partial in ("lfw-crops-home", "lfw-src"):  # a worker that failed midway
                shutil.rmtree(root / partial, ignore_errors=True)
            _build_lfw_crops(root)
            done.touch()
    return root / "lfw-crops-home"


# --- training helpers shared by the train tests ------------------------------------------------

TRAIN_TINY = dict(batch_size=8, log_every=1, sample_every=2, checkpoint_every=2, threads=1, score_every=0)


def dataset_path(home: Path, size: int = 64) -> str:
    """The lfw_crops fixture's dataset folder of one size."""
    return str(home / "datasets" / "lfw-sample" / str(size))


def metric_history(run_id: str, key: str) -> dict[int, float]:
    """step -> value of an MLflow metric (the last logged value of a step)."""
    from facegan.tasks.common import tracking

    return {m.step: m.value for m in sorted(tracking.metric_history(run_id, key), key=lambda m: m.timestamp)}


def states(module) -> dict:
    """A copy of a module's state_dict, to compare with after training steps."""
    return {k: v.clone() for k, v in module.state_dict().items()}


def train_steps(cfg, steps: int, after_each=lambda parts: None, update: str | None = None):
    """Build a run's parts from `cfg` (seeded, CPU) and run `steps` real updates of its GAN (or of
    the update function `update`, "module:function") on the lfw_crops fixture's faces; every
    update's metrics must be finite. Returns (parts, states of G and D before the first update,
    the last update's metrics)."""
    import math
    from functools import partial

    import torch

    from facegan.config.gans import GANS
    from facegan.tasks.training import checkpoints as ckpt
    from facegan.tasks.training.clusters import class_shares, cluster_faces
    from facegan.tasks.training.data import FaceBatches, load_faces
    from facegan.tasks.training.loop import build_parts, next_real
    from facegan.tasks.training.trained_generators import resolve

    faces = load_faces(Path(cfg.dataset), cfg.size)
    labels = torch.from_numpy(cluster_faces(faces, cfg.clusters, cfg.seed)) if cfg.clusters else None
    ckpt.seed_everything(cfg.seed)
    cpu = torch.device("cpu")
    parts = build_parts(cfg, cpu, None if labels is None else class_shares(labels, cfg.clusters))
    before = states(parts.G), states(parts.D)
    data = FaceBatches(faces, cfg.batch_size, cfg.seed, cpu, torch.contiguous_format, 0, 1, labels)
    step = resolve(update or GANS[cfg.model].update)
    counters = ckpt.Counters()
    for _ in range(steps):
        metrics = step(parts, partial(next_real, data, counters))
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        after_each(parts)
    return parts, before, metrics
