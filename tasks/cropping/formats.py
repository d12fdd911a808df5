"""Image formats beyond Pillow's own: HEIC/HEIF through pillow-heif (a maintained libheif
binding), registered once per process as a Pillow plugin. Used by the folder import (which decodes
every file to decide whether it is an image) and by the crop stage's reader."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_registered: bool | None = None


def register() -> bool:
    """Register the HEIC/HEIF opener with Pillow; False when pillow-heif is not installed."""
    global _registered
    if _registered is None:
        with _lock:
            if _registered is None:
                try:
                    from pillow_heif import register_heif_opener

                    register_heif_opener()
                    _registered = True
                except ImportError:
                    _registered = False
    return _registered
