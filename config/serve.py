"""Config of `facegan serve`: every deployment served from one process (no work pools)."""
from __future__ import annotations

from pydantic import Field, field_validator

from config.base import StageConfig
from config.train import Model


class ServeConfig(StageConfig):
    """Serve all facegan deployments from this one process (Prefect's `serve`): the nightly
    pipeline on its cron schedule plus the on-demand acquire, crop, train and evaluate
    deployments, run here as subprocesses. The simplest production setup: one machine, no work
    pools. Point PREFECT_API_URL at a running `prefect server start` to use the UI and
    `prefect deployment run 'crop/on-demand' --param config='{...}'`; stop with Ctrl-C."""

    cron: str = Field("0 2 * * *", description="cron schedule of face-pipeline/nightly")
    timezone: str = Field("UTC", description="IANA time zone of the cron schedule, e.g. Europe/Berlin")
    paused: bool = Field(False, description="register the nightly schedule paused")
    limit: int = Field(2, ge=1, le=64, description="flow runs executed at the same time by this process")
    trainings: int = Field(1, ge=1, le=64, description="train runs at the same time (one per GPU)")
    source: str = Field("lfw", min_length=1, description="the nightly pipeline's --source")
    models: list[Model] = Field(["dcgan", "wgan-gp", "began"], description="the nightly pipeline's --models")
    cpu_minutes: float = Field(60.0, gt=0, description="the nightly pipeline's training budget per model")

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        from prefect.schedules import validate_cron_string

        try:
            return validate_cron_string(cron.strip())
        except ValueError:
            raise ValueError(f"not a cron expression: {cron!r} (e.g. '0 2 * * *': 02:00 every day)") from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, tz: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as UTC or Europe/Berlin)") from None
        return tz
