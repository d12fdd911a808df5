"""Base class for every flow's config: strict (unknown keys fail), validated on assignment."""

from __future__ import annotations

import os
import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from facegan.config.errors import InputError

Size = Literal[48, 64, 128]  # the crop and model sizes in px
SIZES: tuple[int, ...] = get_args(Size)
Device = Literal["auto", "cpu", "cuda", "mps"]  # auto: CUDA, then MPS, then the CPU
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """A raw set, dataset or run name: letters, digits, '.', '_' or '-' (max 100)."""
    if not _NAME_RE.match(name or ""):
        raise InputError(f"invalid name {name!r}: use letters, digits, '.', '_' or '-' (max 100)")
    return name


def default_workers() -> int:
    """The number of CPUs: a default_factory, so the default is read when a config is made (and
    docs/config.md, generated from the models, says "number of CPUs" rather than this machine's)."""
    return max(1, os.cpu_count() or 1)


def from_env(var: str):
    """A default_factory: the environment variable `var` when set and not empty, else None."""

    def factory() -> str | None:
        return os.environ.get(var, "").strip() or None

    factory.env_var = var  # flows/reference.py shows "$VAR or none"
    return factory


def hidden(default=None, description: str = ""):
    """A field the pipeline/deployments set but the CLI does not show."""
    return Field(default, description=description, json_schema_extra={"cli": False})


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    parent_run_id: str | None = hidden(None, "MLflow run id of the enclosing pipeline run")
