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


# --------------------------------------------------------------------- timed (VFR) files
# OpenCV writes constant-rate files only; variable frame rates (phones) and timestamps that
# do not start at 0 need a container that stores each frame's time. A minimal Matroska
# writer: MJPEG frames in SimpleBlocks with millisecond timestamps.


def _ebml_size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:
            return ((1 << (8 * length - length)) | n).to_bytes(length, "big")
    raise ValueError(f"element of {n} bytes is too large")


def _ebml(element_id: int, payload: bytes) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + _ebml_size(len(payload)) + payload


def _ebml_uint(element_id: int, value: int) -> bytes:
    return _ebml(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def write_timed_video(path: str | os.PathLike, frames: Sequence[np.ndarray], times: Sequence[float]) -> Path:
    """Write RGB frames ``[H, W, 3]`` shown at ``times`` (seconds, increasing; any start, any
    spacing, millisecond precision) as an MJPEG Matroska file (``.mkv``)."""
    import struct

    ms = [int(round(t * 1000)) for t in times]
    if len(ms) != len(frames) or not frames or any(b <= a for a, b in zip(ms, ms[1:])) or ms[0] < 0:
        raise ValueError("one time per frame, increasing by at least 1 ms, from 0 s on")
    height, width = frames[0].shape[:2]
    header = _ebml(0x1A45DFA3, _ebml_uint(0x4286, 1) + _ebml_uint(0x42F7, 1) + _ebml_uint(0x42F2, 4)
                   + _ebml_uint(0x42F3, 8) + _ebml(0x4282, b"matroska") + _ebml_uint(0x4287, 4)
                   + _ebml_uint(0x4285, 2))
    last_step = ms[-1] - ms[-2] if len(ms) > 1 else 40
    info = _ebml(0x1549A966, _ebml_uint(0x2AD7B1, 1_000_000)  # timestamps in ms
                 + _ebml(0x4489, struct.pack(">d", float(ms[-1] + last_step)))  # duration
                 + _ebml(0x4D80, b"videoact.testing") + _ebml(0x5741, b"videoact.testing"))
    track = _ebml(0xAE, _ebml_uint(0xD7, 1) + _ebml_uint(0x73C5, 1) + _ebml_uint(0x83, 1)
                  + _ebml(0x86, b"V_MJPEG") + _ebml(0xE0, _ebml_uint(0xB0, width) + _ebml_uint(0xBA, height)))
    clusters = b""
    for start in range(0, len(frames), 30):  # a block's time is relative to its cluster's (16 bits)
        body = _ebml_uint(0xE7, ms[start])
        for frame, t in zip(frames[start:start + 30], ms[start:start + 30]):
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            body += _ebml(0xA3, b"\x81" + struct.pack(">h", t - ms[start]) + b"\x80" + jpeg.tobytes())
        clusters += _ebml(0x1F43B675, body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + _ebml(0x18538067, info + _ebml(0x1654AE6B, track) + clusters))
    return path
