"""Config of `facegan ui` (the MLflow UI on facegan's own tracking store)."""

from __future__ import annotations

from pydantic import Field

from facegan.config.base import StageConfig


class UiConfig(StageConfig):
    """Open the MLflow UI on the store facegan writes to: MLFLOW_TRACKING_URI when it is set,
    else $FACEGAN_HOME/mlflow.db (artifacts in $FACEGAN_HOME/mlartifacts). It opens on the runs of
    the `facegan` experiment (FACEGAN_EXPERIMENT). Listens on the loopback interface unless --host
    says otherwise; stop with Ctrl-C. When MLFLOW_TRACKING_URI is already an MLflow server, its
    address is printed instead."""

    host: str = Field("127.0.0.1", min_length=1, description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(5000, ge=1, le=65535, description="port of the UI")
    workers: int = Field(1, ge=1, le=16, description="web server worker processes")
