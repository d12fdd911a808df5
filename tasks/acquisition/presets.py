"""Dataset presets: where the public datasets are published and their published checksums.

- lfw: Labeled Faces in the Wild, deep-funneled (UMass), 13,233 JPEGs of 5,749 people in
  lfw-deepfunneled/<Name>/<Name>_NNNN.jpg; identity = folder name. Research use.
- celeba: CelebA aligned faces (img_align_celeba.zip, 202,599 JPEGs). The official copy is on
  Google Drive, which often answers automated downloads with an HTML "can't scan for viruses" or
  quota page instead of the file: facegan then stops with a clear message; download the zip by
  hand and use `--path` (extracted folder) or `--url` (a mirror). Non-commercial research only.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegan.config.acquire import Preset


@dataclass(frozen=True)
class PresetDownload:
    name: Preset
    url: str
    checksum: tuple[str, str]  # (algorithm, hex digest) as published
    note: str


DOWNLOADS: dict[Preset, PresetDownload] = {  # one per name of facegan.config.acquire.PRESETS
    "lfw": PresetDownload(
        "lfw",
        "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
        ("md5", "68331da3eb755a505a502b5aacb3c201"),
        "LFW deep-funneled (UMass); md5 as published on the LFW page",
    ),
    "celeba": PresetDownload(
        "celeba",
        "https://drive.google.com/uc?export=download&id=0B7EVK8r0v71pZjFTYXZWM3FlRnM",
        ("md5", "00d2c5bc6d35e252742224ab0c1e8fcb"),
        "CelebA img_align_celeba.zip on Google Drive (often refused: use --path or --url)",
    ),
}

GOOGLE_DRIVE_REFUSED = (
    "Google Drive returned a web page instead of img_align_celeba.zip (it often refuses "
    "automated downloads): download it in a browser, then run `facegan acquire --path "
    "<extracted folder>` or `facegan acquire --url <mirror of the zip>`"
)


def get(name: str) -> PresetDownload:
    return DOWNLOADS[name]
