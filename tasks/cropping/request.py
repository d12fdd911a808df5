"""The crop request, checked once by one function for the CLI's fast preflight (flows/preflight.py)
and for the crop flow's plan (stage.plan_crop): the raw set resolves, the dataset name is valid, a
Dask scheduler (--dask-address) answers with workers. Light: no pandas, Prefect or OpenCV."""

from __future__ import annotations

from dataclasses import dataclass

from facegan.config.crop import CropConfig
from facegan.tasks.common.paths import check_name, resolve_raw
from facegan.tasks.cropping.runner import connect_cluster


@dataclass(frozen=True)
class CropRequest:
    raw: str  # the raw set cropped (--raw, or the most recent one)
    name: str  # the dataset written (--name, or the raw set's name)
    address: str | None  # the Dask scheduler's full address, if any
    slots: int  # threads cropping at once: the cluster's, else --workers


def check_request(config: CropConfig) -> CropRequest:
    """An unknown raw set, a bad name or an unusable Dask cluster fail here, in one line."""
    raw = resolve_raw(config.raw)
    name = check_name(config.name or raw)
    address, slots = connect_cluster(config.dask_address) if config.dask_address else (None, config.workers)
    return CropRequest(raw, name, address, slots)
