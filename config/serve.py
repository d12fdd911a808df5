"""Config of `facegan serve`: every deployment served from one process (no work pools)."""

from __future__ import annotations

from pydantic import Field, field_validator

from facegan.config.base import StageConfig
from facegan.config.deployments import NIGHTLY_CRON, NIGHTLY_TIMEZONE, nightly_pipeline
from facegan.config.train import Model

_NIGHTLY = nightly_pipeline()


class ServeConfig(StageConfig):
    """Serve all facegan deployments from this one process (Prefect's `serve`): the nightly
    pipeline on its cron schedule plus the on-demand acquire, crop, train and evaluate
    deployments, run here as subprocesses. The simplest production setup: one machine, no work
    pools. Point PREFECT_API_URL at a running `prefect server start` to use the UI and
    `prefect deployment run 'crop/on-demand' --param config='{...}'`; stop with Ctrl-C."""

    cron: str = Field(NIGHTLY_CRON, description="cron schedule of face-pipeline/nightly")
    timezone: str = Field(NIGHTLY_TIMEZONE, description="IANA time zone of the cron schedule, e.g. UTC")
    paused: bool = Field(False, description="register the nightly schedule paused")
    limit: int = Field(2, ge=1, le=64, description="flow runs executed at the same time by this process")
    trainings: int = Field(1, ge=1, le=64, description="train runs at the same time (one per GPU)")
    source: str = Field(_NIGHTLY["source"], min_length=1, description="the nightly pipeline's --source")
    models: list[Model] = Field(_NIGHTLY["models"], description="the nightly pipeline's --models")
    cpu_minutes: float = Field(
        _NIGHTLY["cpu_minutes"], gt=0, description="the nightly pipeline's training budget per model"
    )

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

    def nightly_parameters(self) -> dict:
        """The nightly pipeline's config: facegan.config.deployments' with this command's --source,
        --models and --cpu-minutes."""
        return {
            **nightly_pipeline(),
            "source": self.source,
            "models": list(self.models),
            "cpu_minutes": self.cpu_minutes,
        }
