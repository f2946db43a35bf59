"""Small real videos for tests and benchmarks: each frame carries its own index.

Frame ``i`` shows the bits of ``i`` as a row of black/white blocks across the top
half of the picture (most significant bit first) and a colour that changes with
``i`` in the bottom half. Blocks are large, so the index survives lossy codecs
(MPEG-4 part 2, MJPEG, VP8) and resizing; :func:`read_frame_index` recovers it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

INDEX_BITS = 10  # up to 1024 frames

# Containers and fourccs that OpenCV's bundled FFmpeg can write here.
CODECS = {
    ".mp4": "mp4v",
    ".avi": "MJPG",
    ".mkv": "FFV1",
    ".webm": "VP80",
}


def coded_frame(index: int, height: int = 96, width: int = 128) -> np.ndarray:
    """One RGB uint8 frame ``[H, W, 3]`` whose picture encodes ``index``."""
    frame = np.zeros((height, width, 3), np.uint8)
    edges = np.linspace(0, width, INDEX_BITS + 1).round().astype(int)
    for bit in range(INDEX_BITS):
        if (index >> (INDEX_BITS - 1 - bit)) & 1:
            frame[: height // 2, edges[bit] : edges[bit + 1]] = 255
    rng = np.random.default_rng(index)
    frame[height // 2 :] = rng.integers(40, 216, size=3, dtype=np.uint8)
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Recover the index from a decoded RGB frame ``[H, W, 3]`` (any size)."""
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    top = frame[: height // 2].astype(np.float32).mean(axis=2)
    block = width / INDEX_BITS
    index = 0
    for bit in range(INDEX_BITS):
        lo, hi = int(bit * block + block * 0.25), int(bit * block + block * 0.75)
        value = top[height // 8 : height // 2 - height // 8, lo:hi].mean()
        index = (index << 1) | int(value > 127)
    return index


def write_video(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray] | np.ndarray,
    fps: float = 25.0,
    fourcc: str | None = None,
) -> Path:
    """Encode RGB frames ``[T, H, W, 3]`` into a real video file with OpenCV.

    The codec follows the file extension (see ``CODECS``) unless ``fourcc`` is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = fourcc or CODECS.get(path.suffix.lower(), "mp4v")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc!r} video here")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def write_coded_video(
    path: str | os.PathLike,
    num_frames: int,
    fps: float = 25.0,
    height: int = 96,
    width: int = 128,
    fourcc: str | None = None,
) -> Path:
    """Write a video of ``num_frames`` frames, frame ``i`` encoding ``i``."""
    if num_frames > 2**INDEX_BITS:
        raise ValueError(f"at most {2 ** INDEX_BITS} frames can be index-coded")
    frames = [coded_frame(i, height, width) for i in range(num_frames)]
    return write_video(path, frames, fps=fps, fourcc=fourcc)
