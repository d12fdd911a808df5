from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, model_validator

from facegan.config.base import StageConfig

Preset = Literal["lfw", "celeba"]  # the public datasets `--preset` knows (tasks/acquisition/presets.py: where)
PRESETS: tuple[str, ...] = get_args(Preset)


class AcquireConfig(StageConfig):
    """Bring images into FACEGAN_HOME/raw/<name>: import a local folder, download URLs, URL lists,
    archives or a dataset preset, or scrape image links from web pages. Give exactly one source.

    CelebA's official copy is on Google Drive, which often refuses automated downloads: then pass
    --url to a mirror of img_align_celeba.zip, or --path to a local copy."""

    path: Path | None = Field(
        None, description="local folder to import in place (recursive), or a local zip/tar archive to extract"
    )
    url: str | None = Field(None, description="one image or archive (zip/tar/tgz) URL")
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="expected sha256 of the --url download, checked before anything is extracted",
    )
    url_list: Path | None = Field(None, description="txt/csv/parquet file of URLs (column `url`, optional `identity`)")
    preset: Preset | None = Field(
        None,
        description="dataset preset: lfw (deep-funneled tgz, md5-verified) or celeba (Google Drive, which often "
        "refuses scripts: "
        "then use --url to a mirror or --path)",
    )
    scrape: list[str] | None = Field(None, description="start page URL(s) to crawl for <img> links")
    depth: int = Field(1, ge=0, le=10, description="link depth for --scrape")
    allow_domain: list[str] | None = Field(
        None,
        description="domains (and their subdomains) --scrape may fetch pages and images from; none = the start "
        "pages' hosts",
    )
    max_pages: int = Field(50, ge=1, description="page budget for --scrape")
    identity: Literal["auto", "folder", "none"] = Field(
        "auto",
        description="who is in each photo, for the "
        "evaluation's held-out split: folder = the parent folder's name (one person per folder), none = "
        "unknown (split by source image), auto = folder only when the layout is one person per folder like "
        "LFW's <Name>/<Name>_0001.jpg (9 in 10 files named after their folder)",
    )
    name: str | None = Field(
        None, description="raw set name; none = derived from the source (folder, archive or list name, preset, host)"
    )
    workers: int = Field(
        16, ge=1, le=256, description="concurrent downloads (folder import: processes, at most one per CPU)"
    )
    timeout: float = Field(20.0, gt=0, description="per-request connect/read timeout in seconds")
    retries: int = Field(3, ge=0, le=10, description="retries on 5xx and connection errors (exponential backoff)")
    backoff: float = Field(0.5, ge=0, le=60, description="backoff factor: retry n waits backoff * 2**(n-1) seconds")
    max_bytes: int = Field(50_000_000, ge=1, description="max bytes per downloaded image")
    max_archive_bytes: int = Field(
        20_000_000_000, ge=1, description="cap on an archive download and on its extracted size"
    )
    max_archive_files: int = Field(2_000_000, ge=1, description="cap on files extracted from one archive")
    delay: float = Field(1.0, ge=0, description="per-host delay between page fetches when scraping, seconds")
    shard_size: int = Field(200, ge=1, description="URLs (or files) per Prefect task")
    user_agent: str = Field(
        "facegan/0.1 (face dataset builder; obeys robots.txt)",
        min_length=1,
        description="User-Agent sent with every request",
    )
    progress: bool = Field(True, description="show progress bars")

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("path", "url", "url_list", "preset", "scrape") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one source: --path, --url, --url-list, --preset or --scrape"
                + (f" (got {', '.join('--' + g.replace('_', '-') for g in given)})" if given else "")
            )
        if self.sha256 and not self.url:
            raise ValueError("--sha256 goes with --url")
        return self
