"""128-d face_recognition encodings for every image, detected or not.

Each image is prepared exactly as for detection (resized to 256 px bicubic) and encoded with the
whole image as the face location (the crops are already face-centred). The face-space metrics
(Fréchet distance, precision/recall, spread, memorisation: facegan.evaluation.metrics.face_space_row) use
only the encodings of images in which a face is detected: dlib encodes anything it is given, and
the encoding of noise is not a face.
"""

from __future__ import annotations

import numpy as np

from facegan.evaluation import face_lib
from facegan.evaluation.detection import DETECT_SIZE, check_images, prepare

DIM = 128
WHOLE_IMAGE = [(0, DETECT_SIZE, DETECT_SIZE, 0)]  # (top, right, bottom, left)


def _encode_chunk(images: np.ndarray) -> list[np.ndarray]:
    fr = face_lib.load()
    out = []
    for im in images:
        enc = fr.face_encodings(prepare(im), known_face_locations=WHOLE_IMAGE, num_jitters=1)
        out.append(np.asarray(enc[0], dtype=np.float32))
    return out


def _score_chunk(images: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Detection and encoding in one pass over a chunk (the image is resized once)."""
    fr = face_lib.load()
    out = []
    for im in images:
        ready = prepare(im)
        faces = len(fr.face_locations(ready, 0, "hog"))
        enc = fr.face_encodings(ready, known_face_locations=WHOLE_IMAGE, num_jitters=1)[0]
        out.append((faces, np.asarray(enc, dtype=np.float32)))
    return out


def encode(images: np.ndarray, workers: int | None = None, progress: str | None = None) -> np.ndarray:
    """float32 (N, 128) face_recognition encodings, whole image as the face location."""
    images = check_images(images)
    if len(images) == 0:
        return np.zeros((0, DIM), np.float32)
    return np.stack(face_lib.map_chunks(_encode_chunk, images, workers, 16, progress))


def detect_and_encode(
    images: np.ndarray, workers: int | None = None, progress: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(detected bool (N,), encodings float32 (N, 128)) with the HOG protocol, in one pass."""
    images = check_images(images)
    if len(images) == 0:
        return np.zeros(0, bool), np.zeros((0, DIM), np.float32)
    results = face_lib.map_chunks(_score_chunk, images, workers, 16, progress)
    return np.array([r[0] > 0 for r in results]), np.stack([r[1] for r in results])
