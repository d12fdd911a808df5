"""Trained generators: build, save, load (from a run id, a checkpoint or a registered model)
and sample.

    G, meta = load_generator("<run name>" | "<mlflow run id>" | "runs/x/checkpoints/step-000500.pt"
                             | "models:/facegan-dcgan-64/1")
    images = sample_images(G, meta, 1000, seed=0)      # uint8 (1000, size, size, 3) RGB

meta: model (a key of facegan.config.gans.GANS), size, z_dim, features, dataset (name),
dataset_path (relative to FACEGAN_HOME when inside it, else absolute), run_id, run_name, step,
ema (whether the weights are the EMA generator's, which is preferred whenever it exists).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facegan.config.errors import NotFoundError
from facegan.config.gans import GANS
from facegan.config.recipe import kimg_of
from facegan.tasks.common.paths import named_run_id

GENERATOR_ARTIFACT = "generator/generator.pt"
META_ARTIFACT = "generator/meta.json"
RUN_DIR_TAG = "facegan.run_dir"


def resolve(target: str):
    """The object a GAN registry entry names as "module:attribute"."""
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def build_generator(model: str, values: Mapping[str, Any]) -> nn.Module:
    """The generator of `model` from the values its registry entry names (a TrainConfig dumped, or
    a generator file's meta; one written before an argument existed gets its default)."""
    if model not in GANS:
        raise NotFoundError(f"unknown model {model!r}: use one of {', '.join(GANS)}")
    args = {arg: values[name] for arg, name in GANS[model].generator_args.items() if name in values}
    return resolve(GANS[model].generator)(**args)


def build_discriminator(cfg) -> nn.Module:
    """The discriminator / critic of cfg.model, built from the TrainConfig fields its registry
    entry names."""
    gan = GANS[cfg.model]
    return resolve(gan.discriminator)(**{arg: getattr(cfg, name) for arg, name in gan.discriminator_args.items()})


def build_state(cfg):
    """The extra training state of cfg.model (BEGAN's equilibrium k_t), or None."""
    gan = GANS[cfg.model]
    return (
        resolve(gan.state)(**{arg: getattr(cfg, name) for arg, name in gan.state_args.items()}) if gan.state else None
    )


def budget_of(checkpoint: dict) -> dict:
    """What a training checkpoint cost: step, kimg (real images shown to D, all ranks),
    cpu_minutes, and the recipe it was trained with."""
    cfg = checkpoint.get("config") or {}
    kimg = kimg_of(checkpoint.get("batches", 0), cfg.get("batch_size", 0), cfg.get("nproc", 1))
    return {
        "step": checkpoint["step"],
        "kimg": kimg,
        "cpu_minutes": checkpoint.get("cpu_seconds", 0.0) / 60,
        "recipe": cfg.get("recipe"),
    }


def generator_payload(state_dict: dict, meta: dict) -> dict:
    return {"format": "facegan-generator-1", "meta": dict(meta), "state_dict": state_dict}


def _from_payload(payload: dict, device) -> tuple[nn.Module, dict]:
    if payload.get("format") == "facegan-generator-1":
        meta, state = dict(payload["meta"]), payload["state_dict"]
    elif "config" in payload and "G" in payload:  # a full training checkpoint
        meta = dict(payload["meta"])
        meta.update(budget_of(payload))
        state = payload["ema"] if payload.get("ema") is not None else payload["G"]
        meta["ema"] = payload.get("ema") is not None
    else:
        raise NotFoundError("not a facegan checkpoint or generator file")
    G = build_generator(meta["model"], meta)
    G.load_state_dict(state)
    return G.to(device).eval(), meta


def _load_file(path: Path, device) -> tuple[nn.Module, dict]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise NotFoundError(f"cannot read generator file {path}: {exc}") from None
    if not isinstance(payload, dict):
        raise NotFoundError(f"{path} is not a facegan checkpoint or generator file")
    return _from_payload(payload, device)


def _load_run(run_id: str, device, artifact: str = GENERATOR_ARTIFACT) -> tuple[nn.Module, dict]:
    from facegan.tasks.common import tracking

    try:
        run = tracking.get_run(run_id)
    except Exception:
        raise NotFoundError(f"no MLflow run, checkpoint or registered model {run_id!r}") from None
    try:
        with tempfile.TemporaryDirectory(prefix="facegan-gen-") as tmp:
            G, meta = _load_file(tracking.download_artifacts(run_id, artifact, tmp), device)
    except Exception:  # the run is still training: use its newest checkpoint
        from facegan.tasks.training.checkpoints import latest_checkpoint

        run_dir = run.data.tags.get(RUN_DIR_TAG)
        latest = latest_checkpoint(Path(run_dir) / "checkpoints") if run_dir else None
        if latest is None:
            raise NotFoundError(
                f"MLflow run {run_id} has no generator (not a facegan training run, or no checkpoint yet)"
            ) from None
        G, meta = _load_file(latest, device)
    meta["run_id"] = run_id
    return G, meta


def _load_registered(uri: str, device) -> tuple[nn.Module, dict]:
    """A registered version: the generator file logged by its source run (the registered
    MLflow model itself is a torch.export program, handy for serving but not a trainable module)."""
    from facegan.tasks.common import tracking

    try:
        run_id, uri = tracking.resolve_model_uri(uri)
    except Exception as exc:
        raise NotFoundError(f"no registered model {uri}: {exc}") from None
    version = uri.rsplit("/", 1)[-1]
    G, meta = _load_run(run_id, device, f"generator/versions/version-{version}.pt")
    meta["model_uri"] = uri
    return G, meta


def load_generator(ref: str, device="cpu") -> tuple[nn.Module, dict]:
    """A generator in eval mode (the EMA weights when the run kept them) and its meta."""
    ref = str(ref).strip()
    device = torch.device(device)
    if ref.startswith("models:/"):
        return _load_registered(ref, device)
    path = Path(ref).expanduser()
    if ref.endswith(".pt") or path.is_file():
        if not path.is_file():
            raise NotFoundError(f"checkpoint {path} does not exist")
        return _load_file(path, device)
    return _load_run(named_run_id(ref) or ref, device)


@torch.no_grad()
def iter_samples(G: nn.Module, meta: dict, n: int, seed: int = 0, batch_size: int = 250):
    """The n images of sample_images in batches of uint8 (b, size, size, 3) RGB, on G's device:
    memory bounded by one batch (plus the n x z_dim noise, drawn on the CPU from `seed` in one
    piece so the images depend on the seed only, not on batch size or device)."""
    device = next(G.parameters()).device
    z = torch.randn(n, meta["z_dim"], generator=torch.Generator().manual_seed(seed))
    was_training = G.training
    G.eval()
    try:
        for start in range(0, n, batch_size):
            x = G(z[start : start + batch_size].to(device)).float().clamp_(-1, 1)
            yield ((x + 1) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    finally:
        G.train(was_training)


def sample_images(G: nn.Module, meta: dict, n: int, seed: int = 0, batch_size: int = 250) -> np.ndarray:
    """n images as uint8 (n, size, size, 3) RGB. The noise is drawn on the CPU from `seed` in
    one piece, so the result depends on the seed only (not on batch size or device)."""
    out = np.empty((n, meta["size"], meta["size"], 3), dtype=np.uint8)
    start = 0
    for batch in iter_samples(G, meta, n, seed, batch_size):
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out
