from __future__ import annotations

from pydantic import Field, field_validator

from facegan.config.base import SIZES, Size, StageConfig, default_workers, from_env


class CropConfig(StageConfig):
    """Detect faces with OpenCV's Haar cascade (again on a padded copy when the first search finds none)
    and crop them into 48/64/128 px datasets; or crop already-aligned faces (--aligned)."""

    raw: str | None = Field(None, description="raw image set to crop; none = the only or most recent one")
    name: str | None = Field(None, description="output dataset name; none = the raw set's name")
    sizes: list[Size] = Field(list(SIZES), description="crop sizes in px, written in one pass")
    largest_only: bool = Field(
        False,
        description="keep only the largest face per image instead of all faces (searched big faces first: about 2x "
        "faster "
        "detection)",
    )
    min_face: int = Field(25, ge=8, description="minimum face size in source pixels (Haar minSize)")
    scale_factor: float = Field(1.16, gt=1.0, le=2.0, description="Haar cascade scaleFactor")
    min_neighbors: int = Field(5, ge=0, le=50, description="Haar cascade minNeighbors")
    pad: float = Field(
        0.30,
        ge=0.0,
        le=1.0,
        description="when the normal search finds no face, search again on the image padded on every side "
        "(replicated border) by "
        "this share of its longer side: finds faces that touch the borders (tight chips); 0 = no second search",
    )
    aligned: bool | None = Field(
        None,
        description="the images are aligned faces, one centred face each: crop the centred square, no detection "
        "(--aligned); "
        "--no-aligned: never treat a set as aligned; none = automatic: when the detected boxes of a same-size set "
        "agree (an aligned set), images without a detected face are cut at the set's typical face box",
    )
    margin: float = Field(0.10, ge=0.0, le=1.0, description="box growth per side, as a fraction of the face box")
    dedupe: bool = Field(True, description="drop exact-duplicate crops (identical pixels)")
    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        le=64,
        description="parallel crop workers (threads: OpenCV releases the GIL)",
    )
    shard_size: int | None = Field(
        None, ge=1, description="images per Prefect task (shard); none = auto (about 4 shards per worker, at most 200)"
    )
    dask_address: str | None = Field(
        default_factory=from_env("FACEGAN_DASK_ADDRESS"),
        description="Dask scheduler (tcp://host:8786) to run the shards on, via prefect-dask's DaskTaskRunner, "
        "instead of the "
        "local threads; its workers must see the raw images and $FACEGAN_HOME at the same paths",
    )
    seed: int = Field(0, description="seed for the contact sheet's random sample")

    @field_validator("sizes")
    @classmethod
    def _unique_sorted(cls, sizes: list[int]) -> list[int]:
        if not sizes:
            raise ValueError("give at least one size")
        return sorted(set(sizes))
