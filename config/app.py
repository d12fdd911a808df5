"""Config of `facegan app` (the Streamlit generator page)."""

from __future__ import annotations

from pydantic import Field

from facegan.config.base import StageConfig


class AppConfig(StageConfig):
    """Open the generator app: a web page to pick a registered facegan model, generate 10 faces
    or 1, and download them. Uses the MLflow store of MLFLOW_TRACKING_URI (else FACEGAN_HOME's)."""

    host: str = Field("127.0.0.1", min_length=1, description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8501, ge=1, le=65535, description="port of the page")
    browser: bool = Field(False, description="open a browser tab")
