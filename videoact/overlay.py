"""Annotated frames and videos: top-k labels, latency, rates and dropped frames drawn on
frames, shared by the live window, ``videoact stream --record`` and the annotated copy of
``videoact infer --timeline --annotate``.

Frames are uint8 RGB ``[H, W, 3]`` as everywhere in videoact; drawing returns a new
array (RGB, or BGR with ``bgr_output=True`` to hand straight to OpenCV) and never
changes its input. :class:`AtomicVideoWriter` writes to a temporary name next to the
target and renames it into place when finalised, so a half-written video never sits
under the requested name.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from .atomic import remove_dead_temporaries, temporary_prefix

if TYPE_CHECKING:
    from .stream import StreamResult

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

# Names OpenCV's FFmpeg writer takes for pictures, not videos (gif, image2 muxers).
IMAGE_SUFFIXES = frozenset({".gif", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".apng"})


def video_name_error(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot name a video that videoact writes, or None. OpenCV chooses an
    image muxer for ``.gif``/``.png``/``.jpg``...: one still picture, reported as saved, and
    the temporary's number read as an image sequence's (a file per frame)."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return None
    return f"an image file name ({suffix}), not a video: use {', '.join(sorted(FOURCC_BY_SUFFIX))}"


def _temporary_video(path: Path) -> Path:
    """``.<stem>.tmp-<pid>-<n><suffix>`` beside ``path``: the suffix kept, for it chooses
    OpenCV's container."""
    return path.with_name(f"{temporary_prefix(path.stem, path.suffix)}{os.getpid()}-{next(_counter)}{path.suffix}")


def video_writer_error(path: str | os.PathLike) -> str | None:
    """Why a video cannot be written at ``path``, or None: checked before a run's work
    (its folder made and written to, OpenCV's writer opened on a probe there), so that a
    recording or an annotated copy does not fail at its first frame, late and said as a
    problem of the input."""
    from .atomic import writable_folder

    path = Path(path)
    why = video_name_error(path)
    if why:
        return why
    try:
        writable_folder(path.parent, "the video")
    except OSError as exc:
        return str(exc)
    probe = _temporary_video(path)
    fourcc = FOURCC_BY_SUFFIX.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), 25.0, (64, 64))
    try:
        if not writer.isOpened():
            return f"OpenCV cannot write {fourcc!r} video as {path.suffix or 'a file without suffix'} (use .mp4 or .avi)"
        return None
    finally:
        writer.release()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_GREY = (170, 170, 170)
_BAR = (40, 160, 255)  # RGB
_BAR_DIM = (90, 90, 110)
_counter = itertools.count()


def _scale(frame: np.ndarray) -> float:
    # Text height follows the frame: ~22 px lines at 480p, readable down to ~100 px frames.
    return max(0.3, min(frame.shape[0], frame.shape[1] * 0.75) / 480.0 * 0.6)


def draw_overlay(frame: np.ndarray, top: Sequence[tuple[str, float]], *, label: str | None = None,
                 headline: str | None = None, status: Sequence[str] = (), confident: bool = True,
                 bgr_output: bool = False) -> np.ndarray:
    """Draw a panel with ``headline``, top-k bars and status lines on a copy of ``frame``.

    Args:
        frame: uint8 RGB ``[H, W, 3]``.
        top: ``[(label, prob)]`` best first; each gets a bar proportional to ``prob``.
        label: the accepted label (drawn as the headline when ``headline`` is None).
        headline: first line; default ``label`` or "no confident action".
        status: small lines under the bars (latency, rates, dropped frames, time).
        confident: draw the bars dimmed when False.
        bgr_output: return BGR (for ``cv2.imshow`` / ``cv2.VideoWriter``).
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB frame [H, W, 3], got {frame.dtype} {frame.shape}")
    out = np.ascontiguousarray(frame).copy()
    h, w = out.shape[:2]
    s = _scale(out)
    thick = max(1, int(round(s * 2)))
    line = int(round(34 * s)) + 2
    pad = max(2, int(round(8 * s)))
    if headline is None:
        headline = label if label is not None else "no confident action"
    lines = 1 + len(top) + len(status)
    panel_w = min(w, int(round(360 * s)) + 2 * pad)
    panel_h = min(h, lines * line + 2 * pad)
    # Darken the panel area so text stays readable on any picture.
    region = out[:panel_h, :panel_w]
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)

    y = pad + int(round(24 * s))
    cv2.putText(out, headline, (pad, y), _FONT, s * 1.1, _WHITE if label is not None else _GREY, thick, cv2.LINE_AA)
    bar_w = panel_w - 2 * pad
    for name, prob in top:
        y += line
        filled = int(round(bar_w * max(0.0, min(1.0, float(prob)))))
        cv2.rectangle(out, (pad, y - int(round(20 * s))), (pad + filled, y + int(round(6 * s))),
                      _BAR if confident else _BAR_DIM, -1)
        cv2.putText(out, f"{prob * 100:5.1f}% {name}", (pad + 2, y), _FONT, s * 0.8, _WHITE, max(1, thick - 1),
                    cv2.LINE_AA)
    for text in status:
        y += line
        cv2.putText(out, text, (pad, y), _FONT, s * 0.7, _WHITE, max(1, thick - 1), cv2.LINE_AA)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR) if bgr_output else out


def stream_status(result: "StreamResult | None", *, display_fps: float | None = None,
                  dropped: int | None = None) -> list[str]:
    """Status lines for a live frame: latency, prediction rate, display rate, dropped."""
    parts = []
    if result is not None:
        parts.append(f"latency {result.latency * 1000:.0f} ms  t={result.timestamp:.2f}s")
        parts.append(f"pred {result.prediction_rate:.1f}/s  feat {result.feature_rate:.1f}/s")
    rate = f"display {display_fps:.1f} fps  " if display_fps is not None else ""
    drop = dropped if dropped is not None else (result.dropped if result is not None else 0)
    parts.append(f"{rate}dropped {drop}")
    return parts


def draw_stream_overlay(frame: np.ndarray, result: "StreamResult | None", *, display_fps: float | None = None,
                        dropped: int | None = None, top_k: int = 3, waiting: str | None = None,
                        bgr_output: bool = False) -> np.ndarray:
    """The live view: the latest result's top-k, latency, rates and dropped frames."""
    if result is None:
        return draw_overlay(frame, [], headline=waiting or "waiting for frames...",
                            status=stream_status(None, display_fps=display_fps, dropped=dropped),
                            bgr_output=bgr_output)
    return draw_overlay(frame, result.top[:top_k], label=result.label, confident=result.label is not None,
                        status=stream_status(result, display_fps=display_fps, dropped=dropped),
                        bgr_output=bgr_output)


class AtomicVideoWriter:
    """``cv2.VideoWriter`` that writes ``.<stem>.tmp-<pid>-<n><suffix>`` and renames it on close.

    Opened lazily on the first frame (the size comes from it). :meth:`close` with
    ``commit=True`` releases the writer (finalising the container) and renames the file
    into place; ``commit=False`` deletes it. As a context manager it commits on normal
    exit and discards on errors; on Ctrl-C it commits only with ``keep_on_interrupt``
    (a live recording: what was recorded until then is what the user wants), so that a
    copy of a file cut short never replaces a complete one.

    Frames written with a ``timestamp`` (seconds of source time) are placed on the
    file's constant-rate clock, so the recording of a live source plays in real time
    whatever reached the writer: a gap (a display loop slower than the camera, a camera
    slower than ``fps``) repeats the previous frame, a frame whose slot is already
    written (a source faster than ``fps``) is left out, and a gap longer than
    ``max_gap`` seconds (a stream lost and reconnected) is cut to one frame instead of
    a frozen image. ``repeated`` and ``skipped`` count both.
    """

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None,
                 max_gap: float = 2.0, keep_on_interrupt: bool = False) -> None:
        self.path = Path(path)
        self.keep_on_interrupt = keep_on_interrupt
        if not fps or not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"{self.path}: frame rate must be positive, got {fps}")
        self.fps = float(fps)
        if fourcc is None and video_name_error(self.path):
            raise ValueError(f"{self.path}: {video_name_error(self.path)}")
        self.fourcc = fourcc or FOURCC_BY_SUFFIX.get(self.path.suffix.lower(), "mp4v")
        self.tmp = _temporary_video(self.path)
        # a killed run's copy of this output
        remove_dead_temporaries(self.path.parent, temporary_prefix(self.path.stem, self.path.suffix))
        self._writer: Any = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.max_gap = float(max_gap)
        self.repeated = 0  # frames written again to fill a gap (timestamped writes)
        self.skipped = 0  # timestamped frames left out: their slot was already written
        self._clock: float | None = None  # source time of slot 0
        self._last: np.ndarray | None = None  # last frame written, BGR at the file's size
        self.closed = False

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
        if not writer.isOpened():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)
            raise OSError(f"{self.path}: OpenCV cannot write {self.fourcc!r} video here "
                          f"(use .mp4 or .avi)")
        self._writer, self.size = writer, (width, height)

    def write(self, frame: np.ndarray, *, bgr: bool = False, timestamp: float | None = None) -> None:
        """Append one uint8 frame ``[H, W, 3]`` (RGB, or BGR with ``bgr=True``); with
        ``timestamp``, at its place on the file's clock (see the class docstring)."""
        if self.closed:
            raise ValueError(f"{self.path}: writer is closed")
        repeats = 0
        if timestamp is not None:
            if self._clock is None:  # this frame takes the next slot
                self._clock = float(timestamp) - self.frames / self.fps
            slot = math.floor((float(timestamp) - self._clock) * self.fps + 0.5)
            if slot < self.frames:  # that slot is written already
                self.skipped += 1
                return
            repeats = slot - self.frames
            if repeats > self.max_gap * self.fps:  # a lost stream: cut the gap, restart the clock here
                self._clock += repeats / self.fps
                repeats = 0
        h, w = frame.shape[:2]
        if self._writer is None:
            self._open(w, h)
        elif (w, h) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)  # sources may change size
        for _ in range(repeats if self._last is not None else 0):
            self._writer.write(self._last)
            self.frames += 1
            self.repeated += 1
        image = np.ascontiguousarray(frame if bgr else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self._writer.write(image)
        self.frames += 1
        if self._clock is not None:  # timed writes: the frame a later gap repeats
            self._last = image.copy()  # the caller may reuse its buffer

    def close(self, commit: bool = True) -> Path | None:
        """Finalise; returns the path when a video was committed, else None."""
        if self.closed:
            return self.path if commit and self.path.exists() else None
        self.closed = True
        if self._writer is not None:
            self._writer.release()
        if commit and self.frames > 0:
            with open(self.tmp, "rb+") as f:  # on disk before the rename, as atomic_write does
                os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
            return self.path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)
        return None

    def __enter__(self) -> "AtomicVideoWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(commit=exc_type is None or (self.keep_on_interrupt and issubclass(exc_type, KeyboardInterrupt)))


def window_support() -> tuple[bool, str]:
    """Whether ``cv2.imshow`` can open a window here, and if not, why."""
    import sys

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    try:
        cv2.namedWindow("videoact-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("videoact-probe")
    except cv2.error:
        return False, (f"this OpenCV ({cv2.__version__}) has no GUI support, as opencv-python-headless; "
                       "install opencv-python for a window")
    return True, ""
