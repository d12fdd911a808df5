"""The life of a training run: open it (dataset, run folder, MLflow run, resume), train it to its
budget, publish its result (generator file, registered model, loss curves). Plain functions;
flows/train.py wires them."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import numpy as np

from facegan.config.errors import InputError, NotFoundError, as_interrupt
from facegan.config.recipe import NAME_NEUTRAL, RECIPE_FIELDS
from facegan.config.train import TrainConfig
from facegan.tasks.common import locks, tracking
from facegan.tasks.common.atomic import write_text
from facegan.tasks.common.paths import RUN_FILE, runs_root
from facegan.tasks.training import checkpoints as ckpt
from facegan.tasks.training import figures
from facegan.tasks.training.data import dataset_fingerprint, dataset_info, display_path
from facegan.tasks.training.inputs import check_training_set
from facegan.tasks.training.prepared import PreparedRun, TrainSummary
from facegan.tasks.training.trained_generators import GENERATOR_ARTIFACT, META_ARTIFACT, RUN_DIR_TAG, generator_payload

log = logging.getLogger("facegan.train")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def prepare_run(cfg: TrainConfig) -> PreparedRun:
    """Resolve the dataset, the run folder and the MLflow run (new, or the one being resumed)."""
    checked = check_training_set(cfg)  # the array's header, before anything is created
    dataset, path, crops = checked.name, checked.path, checked.crops
    name = cfg.run_name(dataset)
    run_dir = runs_root() / name
    # one writer per run: a second `train` of it (--resume twice) is refused in one line
    locks.acquire(lock_path(name), busy_message(name))
    try:
        return _prepare(cfg, dataset, path, crops, name, run_dir)
    except BaseException:
        locks.release(lock_path(name))
        raise


def lock_path(name: str) -> Path:
    return locks.run_lock(name)


def busy_message(name: str) -> str:
    return locks.training(name)


def _continue_flags(saved: dict) -> str | None:
    """The options that continue a run trained with other values (a recipe default changed since),
    or None where no option can say it (a value of None, another dataset)."""
    if any(v is None or k == "dataset" for k, v in saved.items()):
        return None
    flags = []
    for key, value in saved.items():
        flag = key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags.append(f"--{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def _prepare(cfg: TrainConfig, dataset: str, path: Path, crops: int, name: str, run_dir: Path) -> PreparedRun:
    info = _read_json(run_dir / RUN_FILE)
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    if cfg.resume and latest is None:
        raise NotFoundError(
            f"--resume: no checkpoint to resume in {run_dir / 'checkpoints'} "
            "(start without --resume, or pass the --name of an existing run)"
        )
    if latest is not None:
        saved = ckpt.load_checkpoint(latest).get("config", {})
        recipe = cfg.recipe_values(dataset)
        # a field added after the checkpoint was written had its neutral value then
        saved_recipe = {**NAME_NEUTRAL, **saved, "dataset": info.get("dataset", dataset)}
        if recipe["precision"] == "auto":  # auto continues a run in whatever this machine computes best
            recipe["precision"] = saved_recipe.get("precision", "auto")
        changed = [k for k in RECIPE_FIELDS if k in saved_recipe and saved_recipe[k] != recipe[k]]
        if changed:
            values = ", ".join(f"{k} ({saved_recipe[k]}; now {recipe[k]})" for k in changed)
            flags = _continue_flags({k: saved_recipe[k] for k in changed})
            again = f"{flags} continues it, or " if flags else ""
            raise InputError(
                f"run {name!r} was trained with a different {values}: {again}pass a new --name to start another run"
            )
    run_id = info.get("run_id")
    if run_id:
        try:
            tracking.get_run(run_id)
        except Exception:
            log.warning("MLflow run %s of %s is not in this tracking store: starting a new one", run_id, name)
            run_id = None
    # which version of the dataset this run saw (evaluate checks its real control against it)
    fingerprint = dataset_fingerprint(path)
    seen = info.get("meta", {}).get("dataset_fingerprint")
    if seen and seen != fingerprint:
        log.warning(
            "dataset %s changed since run %s last trained (fingerprint %s, now %s)",
            display_path(path),
            name,
            seen,
            fingerprint,
        )
    meta = {
        "model": cfg.model,
        "size": cfg.size,
        "z_dim": cfg.z_dim,
        "features": cfg.features,
        **({"attention": cfg.attention} if cfg.attention else {}),
        **({"clusters": cfg.clusters} if cfg.clusters else {}),
        "dataset": dataset,
        "dataset_path": display_path(path),
        "dataset_fingerprint": fingerprint,
        "run_name": name,
    }
    params = {
        **cfg.model_dump(exclude={"parent_run_id", "resume", "name"}),
        "dataset": dataset,
        "dataset_path": meta["dataset_path"],
        "dataset_crops": crops,
        "dataset_fingerprint": fingerprint,
        "run_name": name,
    }
    tags = {
        RUN_DIR_TAG: str(run_dir),
        "facegan.model": cfg.model,
        "facegan.size": cfg.size,
        "facegan.dataset": dataset,
        "facegan.dataset_fingerprint": fingerprint,
    }
    if run_id is None:
        run = tracking.start_run("train", run_name=name, params=params, parent_run_id=cfg.parent_run_id, tags=tags)
        run_id = run.run_id
        run.log_dict(dataset_info(path), "dataset_meta.json")
    else:
        run = tracking.resume_run(run_id)
        run.log_params(params)  # only new keys: budgets may change between resumes
        run.set_tags({"facegan.dataset_fingerprint": fingerprint})  # the version it trains on now
    meta["run_id"] = run_id
    write_text(
        run_dir / RUN_FILE,
        json.dumps({**info, "run_id": run_id, "run_name": name, "dataset": dataset, "meta": meta}, indent=2),
    )
    resumed = int(latest.stem.split("-")[1]) if latest else None
    return PreparedRun(run_id, name, run_dir, path, meta, resumed)


def train(cfg: TrainConfig, prepared: PreparedRun) -> TrainSummary:
    """Train the prepared run to its budget (torchrun workers when nproc > 1); the MLflow run is
    marked FAILED when training stops with an error, KILLED on Ctrl-C (the KeyboardInterrupt then
    says at which step, and from which checkpoint the same command resumes). Returns the loop's
    summary."""
    from facegan.tasks.training import loop, torchrun

    run = tracking.TrackedRun(prepared.run_id)
    try:
        if cfg.nproc > 1:
            return torchrun.launch(cfg, prepared)
        return loop.train_loop(cfg, prepared.dataset_path, prepared.run_dir, prepared.meta, run)
    except BaseException as exc:  # Ctrl-C or SIGTERM: KILLED, and where it stopped; else FAILED
        interrupt = as_interrupt(exc)
        run.finish_after_error("FAILED" if interrupt is None else "KILLED")
        locks.release(lock_path(prepared.run_name))
        if interrupt is None:
            raise
        raise type(interrupt)(interrupted_at(prepared, run)) from None


def interrupted_at(prepared: PreparedRun, run) -> str:
    """Where an interrupted run stopped: its last logged step and the checkpoint it resumes from."""
    try:
        step = run.last_step("loss_d")
    except Exception:  # noqa: BLE001 - the store may be what was interrupted
        step = None
    latest = ckpt.latest_checkpoint(prepared.run_dir / "checkpoints")
    resumes = f"resumes from step {int(latest.stem.split('-')[1])}" if latest else "no checkpoint yet: starts over"
    at = f"at step {step}" if step else "before its first logged step"
    return f"{at} of run {prepared.run_name} ({resumes})"


def finish(prepared: PreparedRun) -> None:
    tracking.TrackedRun(prepared.run_id).finish()
    locks.release(lock_path(prepared.run_name))


def summary_line(prepared: PreparedRun, summary: TrainSummary, published: dict) -> str:
    model = (
        f"model {published['registered_model']} v{published['model_version']}"
        if published.get("registered_model")
        else "model not registered (--no-register-model)"
    )
    return f"run {prepared.run_name}: step {summary.step}, {model}, grid {summary.grid}"


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "numpy", "cloudpickle"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pass
    return pins


def publish(cfg: TrainConfig, prepared: PreparedRun, summary: TrainSummary) -> dict:
    """Log the final (EMA) generator as a file, an MLflow pytorch model (registered as
    facegan-<model>-<size>) and the loss curves. Returns {model_version, generator}."""

    from facegan.tasks.training.trained_generators import load_generator

    run_dir = prepared.run_dir
    info = _read_json(run_dir / RUN_FILE)
    if info.get("published_step") == summary.step:  # a rerun of a finished run: nothing new
        return {
            "model_version": info.get("model_version"),
            "registered_model": info.get("registered_model"),
            "generator": str(run_dir / "generator.pt"),
        }
    run = tracking.TrackedRun(prepared.run_id)
    G, meta = load_generator(summary.checkpoint, device="cpu")  # meta: the checkpoint's budget
    meta.update(prepared.meta)
    gen_path = run_dir / "generator.pt"
    import matplotlib.pyplot as plt

    fig = figures.loss_figure(run.run_id)
    run.log_figure(fig, "loss_curves.png")
    plt.close(fig)
    fig = figures.curves_figure(run.run_id)
    if fig is not None:
        run.log_figure(fig, "realism_curves.png")
        plt.close(fig)
    example = np.random.default_rng(0).standard_normal((2, cfg.z_dim)).astype(np.float32)
    name = f"facegan-{cfg.model}-{cfg.size}" if cfg.register_model else None
    version = run.log_pytorch_model(
        G.float(), "model", registered_name=name, input_example=example, pip_requirements=_requirements()
    )
    meta["model_version"] = version
    if version:  # model, size, kimg and dataset tell the versions apart in the registry
        tags = {
            "model": cfg.model,
            "size": cfg.size,
            "kimg": round(summary.step * cfg.kimg_per_step, 2),
            "steps": summary.step,
            "dataset": prepared.meta["dataset"],
            "recipe": cfg.recipe,
        }
        tracking.describe_model_version(
            name,
            version,
            "{model} at {size} px, {kimg} kimg ({steps} steps) on dataset {dataset}, recipe {recipe}".format(**tags),
            tags,
        )
    ckpt.save_torch_file(generator_payload(G.state_dict(), meta), gen_path)
    folder = GENERATOR_ARTIFACT.rsplit("/", 1)[0]
    run.log_artifact(gen_path, folder)  # the run's newest generator
    run.log_dict(meta, META_ARTIFACT)
    if version:  # and one per registered version, so models:/name/N stays that version
        versioned = run_dir / "generators" / f"version-{version}.pt"
        versioned.parent.mkdir(exist_ok=True)
        ckpt.save_torch_file(generator_payload(G.state_dict(), meta), versioned)
        run.log_artifact(versioned, f"{folder}/versions")
    summary_metrics = {
        "final_step": summary.step,
        "cpu_minutes_total": summary.cpu_seconds / 60,
        "wall_minutes_total": summary.wall_seconds / 60,
    }
    run.log_metrics(summary_metrics, step=summary.step)
    run.set_tags({"facegan.model_version": version or "", "facegan.registered_model": name or ""})
    info = _read_json(run_dir / RUN_FILE)
    write_text(
        run_dir / RUN_FILE,
        json.dumps(
            {**info, "model_version": version, "registered_model": name, "published_step": summary.step}, indent=2
        ),
    )
    return {"model_version": version, "registered_model": name, "generator": str(gen_path)}
