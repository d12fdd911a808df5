"""What a crop tells: its counts and contact sheets to MLflow, a stats table and a Markdown report as
Prefect artifacts, and the lines `facegan crop` prints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facegan.tasks.cropping.dataset import NO_FACE_SHEET, REJECTED
from facegan.tasks.cropping.results import CropResult, CropStats


def publish(run, crop_stats: CropStats, root: Path, sizes: list[int]) -> None:
    """Stats and contact sheets to MLflow; a stats table as a Prefect artifact."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from facegan.tasks.cropping.dataset import CONTACT_SHEET

    stats = crop_stats.metrics
    run.log_metrics(stats)
    for size in sizes:
        run.log_artifact(root / str(size) / CONTACT_SHEET, f"contact_sheets/{size}")
        run.log_artifact(root / str(size) / "meta.json", f"datasets/{size}")
    first = root / str(sizes[0])
    for name in (NO_FACE_SHEET, REJECTED):
        if (first / name).is_file():
            run.log_artifact(first / name, "no_face")
    try:
        create_table_artifact(
            key="crop-stats",
            table=[{"stat": k, "value": v} for k, v in stats.items()],
            description=f"facegan crop: {root.name}",
        )
        create_markdown_artifact(
            key="crop-report", markdown=report_markdown(stats, root, sizes), description=f"facegan crop: {root.name}"
        )
    except Exception:  # noqa: BLE001 - outside a flow run there is nowhere to publish
        pass


def report_lines(stats: dict) -> list[str]:
    """The crop report in a few lines (console and Prefect artifact)."""
    from facegan.tasks.cropping.report import face_rank_line

    skipped = ", ".join(
        f"{n} {k.removeprefix('skipped_').replace('_', ' ')}" for k, n in stats.items() if k.startswith("skipped_")
    )
    return [
        f"images read: {stats.get('images_read', 0)} of {stats.get('images_in', 0)} "
        f"({stats.get('images_unreadable', 0)} unreadable; {stats.get('files_skipped', 0)} files skipped "
        f"at import{': ' + skipped if skipped else ''})",
        f"faces found: {stats.get('faces_haar', 0)} by Haar in {stats.get('images_haar', 0)} images, "
        f"{stats.get('faces_haar_padded', 0)} by the padded search, {stats.get('faces_aligned', 0)} aligned"
        + (" (aligned set)" if stats.get("aligned_set") else ""),
        f"images without a face: {stats.get('images_no_face', 0)}"
        + (f" ({stats['images_too_small']} too small)" if stats.get("images_too_small") else ""),
        *filter(None, [face_rank_line(stats)]),
    ]


def report_markdown(stats: dict, root: Path, sizes: list[int]) -> str:
    first = root / str(sizes[0])
    lines = [f"# facegan crop: {root.name}", ""] + [f"- {line}" for line in report_lines(stats)]
    if (first / REJECTED).is_file():
        table = pd.read_parquet(first / REJECTED)
        if len(table):
            lines += [
                "",
                f"Images that gave no crop (first 50 of {len(table)}; all in `{first / REJECTED}`, "
                f"contact sheet `{first / NO_FACE_SHEET}`, MLflow artifacts `no_face/`):",
                "",
                table.head(50)[["source", "stage", "reason"]].to_markdown(index=False),
            ]
    return "\n".join(lines)


def summary_text(result: CropResult, sizes: list[int]) -> str:
    """What `facegan crop` prints."""
    if result.skipped:
        return f"dataset {result.dataset} up to date at {result.path}"
    stats = result.stats
    per_size = ", ".join(f"{s}px: {result.crops[s]}" for s in sizes)
    report = "\n".join(report_lines(stats))
    return (
        f"cropped {stats['images_in']} images -> {stats['crops']} faces ({per_size}) "
        f"in {stats['seconds']} s ({stats['images_per_s']} img/s)\n{report}\n"
        f"dataset: {result.path} (images without a crop: {NO_FACE_SHEET}, {REJECTED})\n"
        f"mlflow run: {result.run_id}"
    )
