"""Read frames from video files (decord, with an OpenCV fallback) and JPEG frame folders.

Every reader has the same small API::

    with open_video("clip.mp4") as reader:       # backend "auto": decord, else OpenCV
        len(reader)                              # frames VERIFIED to decode
        clip = reader.get([0, 8, 16])            # Clip: frames uint8 [T, H, W, 3] RGB
        for index, seconds, frame in reader:     # sequential, frame ndarray [H, W, 3]
            ...

Container frame counts are not trusted (they are often wrong). How each backend
verifies the count:

* decord: decode the claimed last frame. If that works the claimed count is kept
  (cheap: one seek). If it fails, count by decoding sequentially from the start
  (bounded by the claimed count, so it cannot run away); the count is the number of
  frames before the first one that fails. ``get_batch`` is only ever called on
  indices below the verified count (decord can spin forever on indices past the
  real end of a stream).
* OpenCV: always a sequential ``grab()`` scan to the end of the stream (``grab``
  decodes but skips colour conversion). The first ``get`` does this scan while
  reading, so it costs one pass, not two.

Verified counts (and timestamps) are cached per process, keyed by the file's path,
size and modification time, so re-opening the same file (one reader per dataset item)
does not verify it again.

Random access with OpenCV is exact: it reads forward with ``grab()`` instead of
seeking with ``CAP_PROP_POS_FRAMES``, which lands on the wrong frame with many codecs.
Reading forward from the last position is cheap; going backwards re-opens the file.

Timestamps are seconds since the first decodable frame, taken from the container
(decord ``get_frame_timestamp``, OpenCV ``CAP_PROP_POS_MSEC``), so variable-frame-rate
files get their real times. When a container's times are unusable (not finite, not
strictly increasing, or wildly off the frame rate) ``index / fps`` is used instead.

Rotation metadata is applied (both decord and OpenCV here return upright frames).
Files with several video streams (e.g. nasa_13013.mp4) may be read from different
streams by decord (the "best" stream) and OpenCV (the first one).

Readers hold an open decoder and are meant to be created where they are used (inside
DataLoader workers); a reader is not thread-safe (one per thread). Pickling a reader does not copy the decoder: it pickles the path
and the options, and unpickling RE-OPENS the file by path (re-verifying it in the new
process unless the file is in that process's cache).
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import numbers
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

# cv2 must be loaded before decord: decord2 and opencv-python bundle FFmpeg libraries
# with the same names, and decord loads its copy RTLD_GLOBAL, so whichever comes first
# is used by both. Loaded after decord, OpenCV silently gains decord's decoders (AV1
# via dav1d); this import keeps OpenCV's behaviour independent of import order.
import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

__all__ = [
    "VIDEO_EXTENSIONS",
    "FRAME_NAME",
    "Clip",
    "VideoDecodeError",
    "VideoReader",
    "DecordReader",
    "OpenCVReader",
    "FrameFolderReader",
    "open_video",
    "list_videos",
    "limit_threads",
    "quiet_decoders",
    "call_with_timeout",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m2v", ".wmv",
    ".asf", ".flv", ".f4v", ".gif", ".3gp", ".3g2", ".ogv", ".ts", ".mts", ".m2ts",
    ".vob", ".mxf", ".divx", ".y4m",
)  # fmt: skip

# Frame folders: frame i (0-based) is stored as FRAME_NAME.format(i + 1).
FRAME_NAME = "img_{:05d}.jpg"
META_NAME = "meta.json"
DEFAULT_FPS = 25.0

BACKENDS = ("auto", "decord", "opencv")
# Decoding the decord seek check may cost: about 300 frames of 640x480 (fewer of larger ones).
SEEK_CHECK_PIXELS = 300 * 640 * 480
# Codecs (OpenCV's FOURCC) whose files get that check: HEVC, where FFmpeg's seek can land
# past its target (FFmpeg ticket 11137). Measured on the others (H.264, MPEG-4, MJPEG,
# FFV1, VP8/9, AV1 of the corpus and generated clips): decord's seeks were right.
SEEK_CHECKED_CODECS = {"hevc", "hev1", "hvc1", "h265", "x265"}
# Where decord returns other frames than those asked for, silently (measured 2026-12-01 on
# 100- and 200-frame clips written by OpenCV, against OpenCV reading in order): MPEG-1 and
# MPEG-2 video in any container (get_batch of frames 12, 37, 62 of an MPEG-1 file gave 8, 6,
# 7), and MPEG program/transport streams and ASF whatever the codec (an MPEG-2 .ts read in
# order started at frame 3; WMV2 was right in AVI and MKV, wrong in ASF). decord refuses them.
DECORD_WRONG_CODECS = frozenset({"mpg1", "mpg2", "pim1", "pim2", "mpeg", "m1v", "m2v"})
DECORD_WRONG_CONTAINERS = frozenset({".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".m2v", ".vob", ".asf", ".wmv"})
# The codecs the "auto" backend gives to decord: those measured right, in order and by
# seeking (the corpus's H.264, HEVC with the check above, AV1, VP9; written clips of MPEG-4
# part 2, MS-MPEG-4, MJPEG, VP8, VP9, FFV1, FFVHuff, HuffYUV, Snow, PNG, FLV1, GIF). Any other
# (H.263 was wrong in AVI, WMV in ASF; others not measured) is read by OpenCV, which
# decodes in order: slower for sparse frames of a long file, never the wrong frames.
DECORD_CODECS = frozenset({
    "h264", "avc1", "avc3", "x264", "hevc", "hev1", "hvc1", "h265", "x265", "av01",
    "fmp4", "mp4v", "xvid", "divx", "dx50", "mp42", "mp43", "div3", "mjpg", "vp80", "vp90",
    "vp09", "ffv1", "ffvh", "hfyu", "snow", "mpng", "flv1", "gif",
})


# Set by quiet_decoders(); read where decord is first used, so that processes started
# later (decode workers, torchrun ranks) inherit it.
QUIET_ENV = "VIDEOACT_QUIET_DECODERS"
_decord_quiet = False


def quiet_decoders() -> None:
    """Silence the FFmpeg log lines of decord and OpenCV (``[h264 @ 0x...] Invalid NAL
    unit size``), and OpenCV's own warnings, in this process and the processes it starts.

    The ``videoact`` command calls this: every problem it meets is reported once, naming
    the file. OpenCV reads its setting (``OPENCV_FFMPEG_LOGLEVEL``, kept if you set it)
    when it first opens a video, so call this before that. Set ``VIDEOACT_QUIET_DECODERS=0``
    to keep the decoders' own lines (debugging a file).
    """
    if os.environ.get(QUIET_ENV) == "0":
        return
    os.environ[QUIET_ENV] = "1"
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    # OpenCV's own warnings ("[ WARN:0@1.6] global cap.cpp:212 open VIDEOIO(FFMPEG): backend
    # is generally available but can't be used to capture by name" on each refused open of
    # a stream): read from the environment when cv2 loads, set directly once it has.
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"
        if "cv2" in sys.modules:
            sys.modules["cv2"].utils.logging.setLogLevel(sys.modules["cv2"].utils.logging.LOG_LEVEL_ERROR)


def load_decord() -> Any:
    """``import decord``, with torch loaded first where it is installed.

    Why: importing decord2 dlopens every pip-installed NVIDIA library with RTLD_GLOBAL
    (the CUDA torch wheels install them), libnvblas among them, which exports the standard
    BLAS symbols. A torch loaded after that resolved its BLAS calls to nvblas, and on a
    machine without a GPU the first matrix product segfaulted (2026-11-30: decoding before
    anything imported torch, as the README's first library example does, then
    ``torch.ones(64, 64) @ torch.ones(64, 64)``). Loaded first, torch keeps its own BLAS.
    cv2 is loaded before decord too (at the top of this module, for its FFmpeg)."""
    try:
        import torch  # noqa: F401
    except ImportError:  # decoding without torch: nothing to protect
        pass
    import decord

    return decord


def _quiet_decord_if_asked() -> None:
    global _decord_quiet
    if not _decord_quiet and os.environ.get(QUIET_ENV) == "1":
        decord = load_decord()
        decord.logging.set_level(decord.logging.QUIET)
        _decord_quiet = True


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) cannot be read. ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.path, self.reason))


@dataclass
class Clip:
    """Frames read from one video.

    frames: uint8 ``[T, H, W, 3]`` RGB (CPU); indices: int64 ``[T]`` frame indices in
    the video; timestamps: float64 ``[T]`` seconds since the first frame.
    """

    frames: "torch.Tensor"
    indices: "torch.Tensor"
    timestamps: "torch.Tensor"
    fps: float
    path: str

    def __len__(self) -> int:
        return int(self.frames.shape[0])


# ----------------------------------------------------------------------------- helpers


def limit_threads(num_threads: int = 1) -> None:
    """Cap OpenCV's (and, if already imported, torch's) process-wide thread pools.

    Call it at the start of each worker process so N workers do not each start one
    thread per core. Decoder threads are set per reader (``num_threads``).
    """
    cv2.setNumThreads(max(0, int(num_threads)))
    torch = sys.modules.get("torch")
    if torch is not None and num_threads > 0:
        torch.set_num_threads(int(num_threads))


def _file_key(path: str, backend: str) -> tuple[Any, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (backend, os.path.realpath(path), st.st_size, st.st_mtime_ns)


@dataclass
class _Verified:
    count: int
    width: int
    height: int
    timestamps: np.ndarray  # raw container times of the verified frames [count], seconds
    fps: float
    damaged: bool = False  # decoding stopped at an error before the claimed count (decord)


class _VerifiedCache:
    """Small per-process LRU of what was learnt of a file version (verification results,
    codecs); thread-safe (extraction opens videos from several threads at once)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._data: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()

    def get(self, key: tuple[Any, ...] | None) -> Any:
        if key is None:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...] | None, value: Any) -> None:
        if key is None:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_CACHE = _VerifiedCache()

# Reads of a damaged file's verified frames with decord, in all, before its error is
# raised: the reads race decord's decoder thread (see DecordReader._reread_damaged). Three
# were too few: the last verified frame of corpus corrupted.mp4 failed three reads in a row
# in 4 of 180 reads on two Zen 3 cores with four busy processes beside them (2026-12-01),
# and once in a clean-clone test run. Only a failed read is repeated.
_DAMAGED_READS = 10


def clear_cache() -> None:
    """Forget verified frame counts (e.g. after rewriting files in place)."""
    _CACHE.clear()


def _clean_fps(fps: float, lowest: float = 0.1) -> float | None:
    """``fps`` where it is a believable frame rate (``lowest`` to 1000), else None."""
    try:
        fps = float(fps) if fps is not None else float("nan")
    except (TypeError, ValueError):  # e.g. a string in a hand-edited meta.json
        return None
    if math.isfinite(fps) and lowest <= fps <= 1000.0:
        return fps
    return None


def _clean_timestamps(raw: np.ndarray | None, fps: float) -> np.ndarray:
    """Container times -> seconds since the first frame, or ``index / fps`` if unusable."""
    n = 0 if raw is None else len(raw)
    fallback = np.arange(n, dtype=np.float64) / fps
    if raw is None or n == 0:
        return fallback
    raw = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        return fallback
    rel = raw - raw[0]
    if n > 1:
        if not np.all(np.diff(rel) > 0):
            return fallback
        mean_interval = rel[-1] / (n - 1)
        if not (0.1 / fps <= mean_interval <= 10.0 / fps):
            return fallback
    return rel


def _summarize(indices: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return f"[{shown}{', ...' if len(indices) > limit else ''}]"


_DECORD_NOISE = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+?:\d+: ")


def _decord_message(exc: BaseException) -> str:
    """decord's C++ errors carry timestamps, source lines and stack traces: keep the gist."""
    text = str(exc).split("Stack trace")[0]
    text = _DECORD_NOISE.sub("", text).strip().splitlines()
    msg = text[-1].strip() if text else type(exc).__name__
    return (msg[:300] + "...") if len(msg) > 300 else msg


def _as_index_list(indices: Iterable[int]) -> list[int]:
    if hasattr(indices, "tolist"):  # numpy arrays, torch tensors
        indices = indices.tolist()  # type: ignore[union-attr]
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame indices must be integers, got {i!r}")
        out.append(int(i))
    return out


# ----------------------------------------------------------------------------- heartbeat

_HEARTBEAT = threading.local()


@contextlib.contextmanager
def heartbeat(beat: Callable[[], None] | None) -> Iterator[None]:
    """Call ``beat()`` at each frame of the scans a reader makes before its first frame (its
    count where the container has none, decord's seek check), and of the frames OpenCV
    decodes on its way to those asked for, made in this thread inside the ``with``.

    Why: a caller that kills a video making no progress (``decode-frames --timeout``) hears
    nothing during such a scan, which takes as long as decoding the whole file: a good
    60-s video whose container gives no duration (as browsers' MediaRecorder write) timed
    out at 3 s before its first frame."""
    previous = getattr(_HEARTBEAT, "beat", None)
    _HEARTBEAT.beat = beat
    try:
        yield
    finally:
        _HEARTBEAT.beat = previous


def _beat() -> None:
    beat = getattr(_HEARTBEAT, "beat", None)
    if beat is not None:
        beat()


# ----------------------------------------------------------------------------- readers


class VideoReader:
    """Base class: a video (or frame folder) as a sequence of verified, decodable frames.

    Attributes: ``path`` (str), ``backend`` ("decord", "opencv" or "frames"), ``fps``,
    ``width``, ``height``, ``fallback_reason`` (why "auto" ended on OpenCV, else None).
    ``len(reader)`` is the number of frames verified to decode.
    """

    backend: str = "?"
    path: str
    fps: float
    width: int
    height: int
    fallback_reason: str | None = None
    _open_args: tuple[Any, ...] = ()

    # --- what subclasses implement

    def _count(self) -> int:
        raise NotImplementedError

    def _all_timestamps(self) -> np.ndarray:
        """Seconds since the first frame for all verified frames ``[len(self)]``."""
        raise NotImplementedError

    def _read(self, indices: list[int]) -> np.ndarray:
        """Frames at valid ``indices`` (any order, repeats allowed) -> ``[T, H, W, 3]``."""
        raise NotImplementedError

    def _iter(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame [H, W, 3])`` for sorted unique valid ``indices``."""
        raise NotImplementedError

    # --- public API

    def __len__(self) -> int:
        return self._count()

    def _check(self, indices: Iterable[int]) -> list[int]:
        idx = _as_index_list(indices)
        n = len(self)
        bad = [i for i in idx if i < 0 or i >= n]
        if bad:
            raise VideoDecodeError(
                self.path,
                f"frame index {bad[0]} out of range: {n} decodable frames "
                f"(valid indices 0..{n - 1})",
            )
        return idx

    def timestamps(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """Seconds since the first frame, float64 ``[T]`` (all frames when ``None``)."""
        ts = self._all_timestamps()
        if indices is None:
            return ts.copy()
        return ts[np.asarray(self._check(indices), dtype=np.int64)]

    def get(self, indices: Sequence[int]) -> Clip:
        """Read exactly the frames at ``indices`` (any order, repeats allowed).

        Returns a :class:`Clip` with frames uint8 ``[T, H, W, 3]`` RGB. Raises
        :class:`VideoDecodeError` for out-of-range indices or frames that fail to decode.
        """
        idx = self._check(indices)
        frames = self._read(idx) if idx else np.zeros((0, self.height, self.width, 3), np.uint8)
        return self._make_clip(idx, frames)

    def _make_clip(self, idx: list[int], frames: np.ndarray) -> Clip:
        import torch

        ts = self._all_timestamps()[np.asarray(idx, dtype=np.int64)]
        return Clip(
            frames=torch.from_numpy(np.ascontiguousarray(frames)),
            indices=torch.tensor(idx, dtype=torch.int64),
            timestamps=torch.from_numpy(np.ascontiguousarray(ts, dtype=np.float64)),
            fps=float(self.fps),
            path=self.path,
        )

    def iter_frames(
        self, indices: Iterable[int] | None = None
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        """Decode sequentially, yielding ``(index, seconds, frame [H, W, 3] uint8 RGB)``.

        ``indices`` (default: all frames) are read in increasing order, each once;
        frames in between are decoded but not converted. Memory stays at one frame.
        Iteration uses its own decoder state, independent of :meth:`get`.
        """
        if indices is None:
            idx = list(range(len(self)))
        else:
            idx = sorted(set(self._check(indices)))
        ts = self._all_timestamps()
        for i, frame in self._iter(idx):
            yield i, float(ts[i]), frame

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        return self.iter_frames()

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Decoders cannot cross processes: re-open by path on unpickling.
        return (open_video, self._open_args)

    def _known_count(self) -> int | None:
        """The verified count if known without decoding (for repr)."""
        return self._count()

    def __repr__(self) -> str:
        n = self._known_count()
        return (
            f"{type(self).__name__}({self.path!r}, backend={self.backend!r}, "
            f"frames={'?' if n is None else n}, fps={self.fps:g}, "
            f"size={self.width}x{self.height})"
        )


_CODECS = _VerifiedCache(1024)


def _fourcc(path: str) -> str:
    """The video codec's FOURCC as OpenCV reports it ("hevc", "h264", ...; "" if unknown),
    remembered per file version (opening costs a few milliseconds)."""
    key = _file_key(path, "fourcc")
    known = _CODECS.get(key)
    if known is not None:
        return known
    cap = cv2.VideoCapture(path)
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC)) if cap.isOpened() else 0
    finally:
        cap.release()
    name = code.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ") if code > 0 else ""
    _CODECS.put(key, name)
    return name


def decord_mismatch(path: str, known_only: bool = False) -> str | None:
    """Why decord must not read ``path`` (it returns other frames than those asked for),
    or ``None``. ``known_only``: also refuse a codec not measured right (``DECORD_CODECS``;
    the "auto" backend's rule: OpenCV reads those)."""
    codec = _fourcc(path)
    suffix = os.path.splitext(path)[1].lower()
    name = f"{codec} video" if codec else "video"
    if codec.lower() in DECORD_WRONG_CODECS:
        return f"decord returns the wrong frames of {name} (frames other than those asked for)"
    if suffix in DECORD_WRONG_CONTAINERS:
        return f"decord returns the wrong frames of {name} in a {suffix} file (frames other than those asked for)"
    if known_only and codec and codec.lower() not in DECORD_CODECS:
        return f"decord is not known to return the right frames of {name}"
    return None


class DecordReader(VideoReader):
    """decord backend: fast random access with ``get_batch`` on verified indices."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, *, scans: int = 3,
                 known_codecs_only: bool = False) -> None:
        """``scans``: sequential scans of a file where decoding stops at damaged data
        (the longest kept; see :meth:`_scan`). ``known_codecs_only``: refuse a codec not
        measured right (see :func:`decord_mismatch`; one measured wrong is always refused)."""
        self.path = str(path)
        self._num_threads = int(num_threads)
        self._scans = max(1, int(scans))
        self._open_args = (self.path, "decord", self._num_threads)
        try:
            load_decord()
        except ImportError as e:
            raise VideoDecodeError(self.path, f"decord is not installed ({e})") from e
        mismatch = decord_mismatch(self.path, known_only=known_codecs_only)
        if mismatch:
            raise VideoDecodeError(self.path, mismatch if known_codecs_only else
                                   f"{mismatch}: use the opencv backend (auto does)")
        self._vr = self._open()
        # The number of scans matters only for a damaged file: its count from fewer scans is
        # kept apart (a reader that asks for more scans rescans); any other count is shared.
        key = _file_key(self.path, "decord")
        fewer = _file_key(self.path, f"decord/{self._scans} scans") if self._scans < 3 else None
        info = _CACHE.get(key) or _CACHE.get(fewer)
        if info is None:
            info = self._verify()
            _CACHE.put(fewer if info.damaged and fewer is not None else key, info)
        self._info = info
        self.fps = info.fps
        self.width, self.height = info.width, info.height
        self._ts: np.ndarray | None = None

    def _open(self) -> Any:
        decord = load_decord()
        _quiet_decord_if_asked()
        try:
            return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self._num_threads)
        except Exception as e:  # DECORDError, RuntimeError, AssertionError("Invalid frame count")
            raise VideoDecodeError(
                self.path, f"{_UNREADABLE} (decord: {_decord_message(e)})"
            ) from e

    def _verify(self) -> _Verified:
        vr = self._vr
        claimed = len(vr)
        damaged = False
        try:
            vr.seek_accurate(claimed - 1)
            last = vr.next().asnumpy()
            count = claimed
        except Exception:
            # The container over-reports (or the stream is damaged): count by decoding.
            count, last, damaged = self._scan(claimed)
            self._vr = vr = self._open()  # the failed seek may have left it in a bad state
        if count == 0 or last is None:
            raise VideoDecodeError(self.path, "no decodable frames (decord decoded none)")
        self._check_seeking(count, int(last.shape[1]) * int(last.shape[0]))
        fps = _clean_fps(vr.get_avg_fps()) or DEFAULT_FPS
        try:
            raw = vr.get_frame_timestamp(list(range(count)))[:, 0]
        except Exception:
            raw = None
        return _Verified(count, int(last.shape[1]), int(last.shape[0]), raw, fps, damaged)

    @property
    def damaged(self) -> bool:
        """Whether decoding in order stopped at damaged data before the claimed count."""
        return self._info.damaged

    def _check_seeking(self, count: int, pixels: int) -> None:
        """Raise when decord's seeks land on other frames than reading in order does.

        Why: on some files decord's ``get_batch`` and ``skip_frames`` are off by one after a
        keyframe, silently (HEVC in MP4, corpus h265_video.mp4: ``get_batch([3])`` gave frame
        4, ``[5]`` gave 6; its in-order ``next()`` is right, and so is OpenCV; FFmpeg ticket
        11137). Checked at the first two keyframes after frame 0 (a seek goes to a keyframe), against in-order decoding
        from a fresh reader, within ``SEEK_CHECK_PIXELS`` of decoding; a keyframe decodes
        to the same pixels either way."""
        try:
            keys = [int(k) for k in self._vr.get_key_indices() if 0 < int(k) < count]
        except Exception:
            return  # no index: nothing to check against
        if not keys or _fourcc(self.path).lower() not in SEEK_CHECKED_CODECS:
            return  # a check costs decoding up to the second keyframe (+6 ms a 160x120 clip)
        reach = SEEK_CHECK_PIXELS // max(1, pixels)
        probes = [k for k in keys[:2] if k <= reach]  # two: h265_video.mp4 was right at its first, wrong at its second
        if not probes:
            return
        try:
            in_order, frames = self._open(), {}
            for i in range(probes[-1] + 1):
                _beat()
                frame = in_order.next().asnumpy()
                if i in probes:
                    frames[i] = frame
            for k in probes:
                if not np.array_equal(self._open().get_batch([k]).asnumpy()[0], frames[k]):
                    raise VideoDecodeError(
                        self.path, f"decord seeks to the wrong frame in this file (frame {k} read by seeking "
                        f"differs from frame {k} read in order)")
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(self.path, f"decord failed while checking its seeking: {_decord_message(e)}") from e

    def _scan(self, claimed: int) -> tuple[int, np.ndarray | None, bool]:
        """Decode sequentially from a fresh reader; stop at the first failure or EOF.
        Returns the count, the last frame and whether it stopped at a failure.

        A failure (damaged data) is scanned for again, up to ``scans`` times in all, and the
        longest run kept: decord decodes in a thread of its own, and its error can overtake
        frames it had already decoded, so one scan of corpus corrupted.mp4 gave 25-27 frames
        instead of 28 now and then (5 % of scans with two busy cores, 60 % with four;
        :class:`_AutoReader` reads such files with OpenCV, which gives 28 every time)."""
        best: tuple[int, np.ndarray | None] = (0, None)
        for _attempt in range(self._scans):
            vr = self._open()
            count, last, failed = 0, None, False
            for _ in range(claimed):  # bounded: never past the claimed count
                _beat()
                try:
                    last = vr.next().asnumpy()
                except StopIteration:  # the end of the stream
                    break
                except Exception:  # DECORDError on damaged data
                    failed = True
                    break
                count += 1
            if count > best[0]:
                best = (count, last)
            if not failed:
                break
        return best[0], best[1], failed

    def _count(self) -> int:
        return self._info.count

    def _all_timestamps(self) -> np.ndarray:
        if self._ts is None:
            self._ts = _clean_timestamps(self._info.timestamps, self.fps)
        return self._ts

    def _read(self, indices: list[int]) -> np.ndarray:
        # A damaged file's verified frames are read again from a fresh reader, up to
        # _DAMAGED_READS times in all: decord's error can overtake them (see
        # _reread_damaged; get_batch([0, 14, 27]) of corpus corrupted.mp4 failed in 10 of
        # 150 reads on two Zen 3 cores with four busy processes beside it, 2026-11-30).
        for _attempt in range(self._reads_allowed(max(indices, default=0))):
            try:
                frames = self._vr.get_batch(indices).asnumpy()
                break
            except Exception as e:
                error = e
                self._vr = self._open()  # reset decoder state for later calls
        else:
            raise VideoDecodeError(
                self.path,
                f"decord failed while reading frames {_summarize(indices)}: {_decord_message(error)}",
            ) from error
        if frames.shape[0] != len(indices):
            raise VideoDecodeError(
                self.path, f"decord returned {frames.shape[0]} frames for {len(indices)} indices"
            )
        self._check_frames(frames, f"batch of frames {_summarize(indices)}")
        return frames

    def _iter(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        vr = self._open()  # independent of get()
        pos = 0  # index of the frame next() returns
        for i in indices:
            try:
                if i - pos > 64:
                    vr.seek_accurate(i)  # exact; jumps via the nearest keyframe
                elif i > pos:
                    vr.skip_frames(i - pos)  # decodes, skips conversion
                frame = vr.next().asnumpy()
            except Exception as e:
                vr, frame = self._reread_damaged(i, e)
            pos = i + 1
            # decord's next() can return mis-strided data for some sizes (which ones depends
            # on the CPU: 96x96 gives [96, 96, 4] on a Zen 4, 72 wide on a Zen 3) where
            # get_batch raises: never pass such frames on.
            self._check_frames(frame[None], f"frame {i}")
            yield i, frame

    def _reads_allowed(self, last: int) -> int:
        """Reads a request up to frame ``last`` may take: ``_DAMAGED_READS`` for a damaged
        file's verified frames (decord's error can overtake them), one for anything else."""
        return _DAMAGED_READS if self.damaged and last < self._count() else 1

    def _reread_damaged(self, i: int, error: Exception) -> tuple[Any, np.ndarray]:
        """Frame ``i`` from a fresh reader, decoding in order, after ``error`` stopped the
        first; returns the reader (positioned after ``i``) and the frame.

        Why: in a damaged file decord's error can overtake frames its scan had verified (the
        race :meth:`_scan` describes; iterating corpus corrupted.mp4 stopped at frame 25 or 27
        of 28 in 4 of 40 runs on two busy cores). Only a damaged file's verified frames are
        read again, up to ``_DAMAGED_READS`` times in all; any other failure is raised at
        once."""
        for _attempt in range(self._reads_allowed(i) - 1):  # the first read was the caller's
            vr = self._open()
            try:
                if i > 0:
                    vr.skip_frames(i)
                return vr, vr.next().asnumpy()
            except Exception as e:
                error = e
        raise VideoDecodeError(
            self.path, f"decord failed while reading frame {i}: {_decord_message(error)}"
        ) from error

    def _check_frames(self, frames: np.ndarray, what: str) -> None:
        """Raise unless ``frames`` is uint8 ``[T, height, width, 3]``."""
        expected = (self.height, self.width, 3)
        if tuple(frames.shape[1:]) != expected or frames.dtype != np.uint8:
            raise VideoDecodeError(
                self.path,
                f"decord returned a malformed {what}: shape {list(frames.shape[1:])} "
                f"{frames.dtype}, expected {list(expected)} uint8",
            )

    def close(self) -> None:
        self._vr = None


class OpenCVReader(VideoReader):
    """OpenCV (FFmpeg) backend: exact sequential access with ``grab()``."""

    backend = "opencv"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.path = str(path)
        self._num_threads = int(num_threads)
        self._open_args = (self.path, "opencv", self._num_threads)
        self._key = _file_key(self.path, "opencv")
        self._cap = self._open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._cap.release()
            raise VideoDecodeError(
                self.path, "no decodable frames (OpenCV opened the file but decoded none)"
            )
        self._pos = 1  # index of the frame the next grab() returns
        self.height, self.width = int(frame.shape[0]), int(frame.shape[1])
        info = _CACHE.get(self._key)
        self._info: _Verified | None = info
        self._container_fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = info.fps if info else (_clean_fps(self._container_fps) or DEFAULT_FPS)
        self._ts: np.ndarray | None = None

    def _open(self) -> Any:
        cap = cv2.VideoCapture(
            self.path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, max(1, self._num_threads)]
        )
        if not cap.isOpened():
            raise VideoDecodeError(self.path, f"{_UNREADABLE} (OpenCV: cannot open it)")
        cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # upright frames, like decord
        return cap

    def _pass(self, wanted: set[int], to_end: bool) -> dict[int, np.ndarray]:
        """Grab forward, retrieving ``wanted`` frames; with ``to_end``, verify the count."""
        out: dict[int, np.ndarray] = {}
        if self._cap is None or to_end or (wanted and min(wanted) < self._pos):
            if self._cap is not None:
                self._cap.release()
            self._cap, self._pos = self._open(), 0  # no backward seeking: restart
        stop = None if to_end else (max(wanted) + 1 if wanted else 0)
        times: list[float] = []
        try:
            while stop is None or self._pos < stop:
                if not self._cap.grab():
                    break
                _beat()
                if to_end:
                    times.append(self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
                if self._pos in wanted:
                    ok, frame = self._cap.retrieve()
                    if not ok or frame is None:
                        raise VideoDecodeError(self.path, f"OpenCV could not decode frame {self._pos}")
                    out[self._pos] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                self._pos += 1
        except BaseException:
            # Stopped after a grab() that _pos does not count yet (a frame that would not
            # decode, a Ctrl-C, a time limit): the next read starts again from a new capture,
            # or every frame after it would come one index late.
            self._cap.release()
            self._cap = None  # type: ignore[assignment]
            raise
        if to_end:
            count = self._pos
            if count == 0:
                raise VideoDecodeError(self.path, "no decodable frames (OpenCV)")
            fps = _clean_fps(self._container_fps)
            if fps is None:  # derive from the stream's own times where they make sense
                span = times[-1] - times[0] if count > 1 else 0.0
                derived = _clean_fps((count - 1) / span) if span > 0 else None
                fps = derived or DEFAULT_FPS
            self._info = _Verified(count, self.width, self.height, np.asarray(times), fps)
            self.fps = fps
            _CACHE.put(self._key, self._info)
        elif len(out) != len(wanted):
            missing = sorted(wanted - set(out))
            raise VideoDecodeError(self.path, f"OpenCV could not decode frames {_summarize(missing)}")
        return out

    def _verified(self) -> _Verified:
        if self._info is None:
            self._pass(set(), to_end=True)
        assert self._info is not None
        return self._info

    def _count(self) -> int:
        return self._verified().count

    def _known_count(self) -> int | None:
        return None if self._info is None else self._info.count

    def _all_timestamps(self) -> np.ndarray:
        if self._ts is None:
            info = self._verified()
            self._ts = _clean_timestamps(info.timestamps, info.fps)
        return self._ts

    def get(self, indices: Sequence[int]) -> Clip:
        if self._info is None:
            # First access: one pass both reads the frames and verifies the count.
            idx = _as_index_list(indices)
            frames = self._pass({i for i in idx if i >= 0}, to_end=True)
            self._check(idx)  # now that the count is known
            return self._make_clip(idx, self._stack(frames, idx))
        return super().get(indices)

    def _stack(self, frames: dict[int, np.ndarray], idx: list[int]) -> np.ndarray:
        if not idx:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        return np.stack([frames[i] for i in idx])

    def _read(self, indices: list[int]) -> np.ndarray:
        return self._stack(self._pass(set(indices), to_end=False), indices)

    def _iter(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        cap = self._open()  # independent of get()
        try:
            pos = 0
            for i in indices:
                while pos <= i:
                    if not cap.grab():
                        raise VideoDecodeError(self.path, f"OpenCV could not decode frame {pos}")
                    _beat()
                    pos += 1
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise VideoDecodeError(self.path, f"OpenCV could not decode frame {i}")
                yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None  # type: ignore[assignment]


class FrameFolderReader(VideoReader):
    """A folder of ``img_00001.jpg, img_00002.jpg, ...`` (as written by ``videoact.frames``).

    ``meta.json`` (optional) gives ``fps`` (else 25.0), ``timestamps`` and
    ``indices`` (the frame indices in the source video, see ``source_indices``).
    """

    backend = "frames"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self._dir = Path(path)
        self._open_args = (self.path, "auto", 1)
        if not self._dir.is_dir():
            raise VideoDecodeError(self.path, "not a directory")
        meta: dict[str, Any] = {}
        meta_path = self._dir / META_NAME
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as e:
                raise VideoDecodeError(str(meta_path), f"unreadable frame-folder metadata: {e}") from e
            if not isinstance(meta, dict):
                raise VideoDecodeError(str(meta_path), "frame-folder metadata is not a JSON object")
        self.meta = meta
        numbers = sorted(_frame_number(p.name) for p in self._dir.glob("img_*.jpg"))
        numbers = [n for n in numbers if n is not None]
        count = 0
        for n in numbers:  # frames must be numbered 1, 2, 3, ... without gaps
            if n != count + 1:
                break
            count += 1
        if count == 0:
            video = next((name for _, _, names in os.walk(self._dir) for name in names  # stops at the first
                          if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS), None)
            raise VideoDecodeError(self.path, f"no frames ({FRAME_NAME.format(1)} not found)" + (
                f"; it holds videos ({video}, ...), not frames: give the videos themselves "
                "(videoact.decode.list_videos(folder))" if video else ""))
        if count != len(numbers):
            raise VideoDecodeError(
                self.path, f"frame files are not numbered contiguously (gap after frame {count})"
            )
        if "num_frames" in meta and int(meta["num_frames"]) != count:
            raise VideoDecodeError(
                self.path,
                f"incomplete frame folder: {META_NAME} lists {meta['num_frames']} frames, "
                f"found {count}",
            )
        self._n = count
        # decode-frames writes the rate it kept, which --fps may set far below the 0.1 a
        # container's claim must reach (--fps 0.05: a frame every 20 s read back at 25).
        self.fps = _clean_fps(meta.get("fps", DEFAULT_FPS), lowest=1e-6) or DEFAULT_FPS
        raw = meta.get("timestamps")
        if isinstance(raw, list) and len(raw) == count:
            self._ts = _clean_timestamps(np.asarray(raw, dtype=np.float64), self.fps)
        else:
            self._ts = np.arange(count, dtype=np.float64) / self.fps
        src = meta.get("indices")
        self.source_indices: list[int] | None = (
            [int(i) for i in src] if isinstance(src, list) and len(src) == count else None
        )
        first = self._load(0)
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def frame_path(self, index: int) -> Path:
        return self._dir / FRAME_NAME.format(index + 1)

    def _load(self, index: int) -> np.ndarray:
        p = self.frame_path(index)
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoDecodeError(str(p), "cannot read JPEG frame")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def _count(self) -> int:
        return self._n

    def _all_timestamps(self) -> np.ndarray:
        return self._ts

    def _read(self, indices: list[int]) -> np.ndarray:
        cache: dict[int, np.ndarray] = {}
        for i in indices:
            if i not in cache:
                cache[i] = self._load(i)
        shapes = {f.shape for f in cache.values()}
        if len(shapes) > 1:
            raise VideoDecodeError(self.path, f"frames have different sizes: {sorted(shapes)}")
        return np.stack([cache[i] for i in indices])

    def _iter(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in indices:
            yield i, self._load(i)


def _frame_number(name: str) -> int | None:
    m = re.fullmatch(r"img_(\d+)\.jpg", name)
    return int(m.group(1)) if m else None


_UNREADABLE = "not a readable video"


def _merge_reasons(decord_reason: str, opencv_reason: str) -> str:
    """One message for "decord failed, then OpenCV failed too"."""
    def detail(reason: str) -> str:
        if reason.startswith(_UNREADABLE + " (") and reason.endswith(")"):
            return reason[len(_UNREADABLE) + 2 : -1]
        return reason

    if decord_reason.startswith(_UNREADABLE) and opencv_reason.startswith(_UNREADABLE):
        return f"{_UNREADABLE} ({detail(decord_reason)}; {detail(opencv_reason)})"
    return f"{decord_reason}; OpenCV fallback: {opencv_reason}"


class _AutoReader(VideoReader):
    """decord first; OpenCV when decord cannot open the file or fails on a read.

    After a fallback ``backend == "opencv"`` and ``fallback_reason`` says why. The
    verified length can change at that point (OpenCV may decode fewer frames).
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.path = str(path)
        self._num_threads = int(num_threads)
        self._open_args = (self.path, "auto", self._num_threads)
        self.fallback_reason = None
        try:
            # One scan of a damaged file: it goes to OpenCV below where OpenCV can read it.
            self._inner: VideoReader = DecordReader(path, num_threads, scans=1, known_codecs_only=True)
        except VideoDecodeError as e:
            self._fallback(e.reason)
            return
        if self._inner.damaged:
            # Where decord stops can vary from run to run (see DecordReader._scan); OpenCV
            # decodes in this thread and stops at the same frame every time. Whenever OpenCV
            # decodes the same stream (its first frame, at decord's size; the count comes
            # later, lazily), so that the choice itself never depends on decord's varying
            # count. Else decord's frames are kept: AV1 here, which this OpenCV cannot decode,
            # or a file of several video streams, where OpenCV reads the first and decord the
            # largest (corpus nasa_13013.mp4).
            decord = self._inner
            try:
                opencv = OpenCVReader(self.path, self._num_threads)
            except VideoDecodeError:
                opencv = None
            if opencv is None or (opencv.width, opencv.height) != (decord.width, decord.height):
                if opencv is not None:
                    opencv.close()
                decord.close()  # decord's frames kept: counted with all its scans, the longest run
                self._inner = DecordReader(self.path, num_threads)
                return
            decord.close()
            self._inner = opencv
            self.fallback_reason = ("decord stops at damaged data, at a frame that can vary from run to run; "
                                    "OpenCV stops at the same one every time")

    def _fallback(self, reason: str) -> None:
        old = getattr(self, "_inner", None)
        try:
            inner = OpenCVReader(self.path, self._num_threads)
        except VideoDecodeError as e:
            raise VideoDecodeError(self.path, _merge_reasons(reason, e.reason)) from e
        if old is not None:
            old.close()
        self._inner = inner
        self.fallback_reason = reason

    # delegate
    backend = property(lambda self: self._inner.backend)  # type: ignore[assignment]
    fps = property(lambda self: self._inner.fps)  # type: ignore[assignment]
    width = property(lambda self: self._inner.width)  # type: ignore[assignment]
    height = property(lambda self: self._inner.height)  # type: ignore[assignment]

    def _count(self) -> int:
        return len(self._inner)

    def _known_count(self) -> int | None:
        return self._inner._known_count()

    def _all_timestamps(self) -> np.ndarray:
        return self._inner._all_timestamps()

    def _can_fall_back(self) -> bool:
        return isinstance(self._inner, DecordReader)

    def get(self, indices: Sequence[int]) -> Clip:
        if not self._can_fall_back():
            return self._inner.get(indices)
        idx = self._check(indices)  # out-of-range is the caller's error, not decord's
        try:
            return self._inner.get(idx)
        except VideoDecodeError as e:
            self._fallback(e.reason)  # "decord failed while reading ..."
        try:
            return self._inner.get(idx)
        except VideoDecodeError as e:
            raise VideoDecodeError(self.path, f"{self.fallback_reason}; then OpenCV: {e.reason}") from e

    def iter_frames(
        self, indices: Iterable[int] | None = None
    ) -> Iterator[tuple[int, float, np.ndarray]]:
        if not self._can_fall_back():
            yield from self._inner.iter_frames(indices)
            return
        wanted = list(range(len(self))) if indices is None else sorted(set(self._check(indices)))
        done = -1
        try:
            for item in self._inner.iter_frames(wanted):
                done = item[0]
                yield item
            return
        except VideoDecodeError as e:
            self._fallback(e.reason)  # "decord failed while reading ..."
        # Continue with OpenCV after the last frame already yielded.
        rest = [i for i in wanted if i > done]
        n = len(self._inner)
        if indices is None:  # "all frames": all that OpenCV can decode
            rest = [i for i in rest if i < n]
        elif rest and rest[-1] >= n:
            raise VideoDecodeError(
                self.path,
                f"{self.fallback_reason}; OpenCV decodes only {n} frames, "
                f"frame {rest[-1]} was requested",
            )
        yield from self._inner.iter_frames(rest)

    def close(self) -> None:
        self._inner.close()


# ----------------------------------------------------------------------------- entry points


# Names FFmpeg's tty demuxer opens, rendering the text as a video of pictures of it
# (an annotation list given to `videoact infer` came out as a 40-frame "video").
TEXT_SUFFIXES = frozenset({".txt", ".asc", ".nfo", ".ans", ".art", ".diz", ".ice", ".vt"})


def open_video(
    path: str | os.PathLike, backend: str = "auto", num_threads: int = 1
) -> VideoReader:
    """Open a video file or a JPEG frame folder.

    Args:
        path: a video file, or a directory of ``img_00001.jpg ...`` frames.
        backend: "auto" (decord, falling back to OpenCV when decord cannot open the
            file or fails on a read; OpenCV for the codecs and containers where decord
            returns wrong frames, see ``DECORD_CODECS``), "decord" or "opencv". Ignored
            for directories.
        num_threads: decoder threads for this reader (keep 1 in DataLoader workers).

    Raises:
        VideoDecodeError: missing, empty, unreadable or undecodable input; the
            message starts with the path.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoDecodeError(p, "file not found")
    try:  # a name in another encoding (Latin-1 from an old archive) reaches Python as surrogates
        p.encode("utf-8")
    except UnicodeEncodeError:  # decord refuses it and OpenCV crashes the process on it
        raise VideoDecodeError(p, "the file name is not valid UTF-8, which the decoders cannot open: "
                                  "rename the file") from None
    if os.path.isdir(p):
        if not os.access(p, os.R_OK | os.X_OK):  # what list_videos lists for a folder it cannot list
            raise VideoDecodeError(p, "a folder that cannot be read (permission denied): the videos in it, "
                                      "if any, are left out")
        return FrameFolderReader(p)
    if not os.path.isfile(p):
        raise VideoDecodeError(p, "not a regular file")
    if os.path.getsize(p) == 0:
        raise VideoDecodeError(p, "file is empty (0 bytes)")
    if not os.access(p, os.R_OK):
        raise VideoDecodeError(p, "permission denied")
    suffix = os.path.splitext(p)[1].lower()
    if suffix in TEXT_SUFFIXES:  # FFmpeg's tty demuxer draws such text as frames: a "video"
        hint = ": an annotation list is the DATA of videoact train, test or extract" if suffix == ".txt" else ""
        raise VideoDecodeError(p, f"a text file ({suffix}), not a video{hint}")
    if backend == "decord":
        return DecordReader(p, num_threads)
    if backend == "opencv":
        return OpenCVReader(p, num_threads)
    return _AutoReader(p, num_threads)


# ------------------------------------------------------------------ time limits


def decoder_hung(what: str, timeout: float) -> TimeoutError:
    """The error for a decoder call that ran past its limit (tests and users grep it)."""
    return TimeoutError(f"{what} did not finish within {round(timeout, 2):g} s (decoder hung)")


def time_limit(value: Any, name: str = "timeout", infinite_is_none: bool = True) -> float | None:
    """A caller's per-file time limit: ``None``, 0 (or infinity, if ``infinite_is_none``) ->
    ``None`` (no limit), else a finite number of seconds > 0. Anything else is refused up
    front, naming the argument: -1 reported every file as hung, ``"5"`` failed every file
    with a TypeError, and ``True`` is no number of seconds."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0
            or (value == math.inf and not infinite_is_none)):
        what = ("a number of seconds >= 0 (0, None or inf: no limit)" if infinite_is_none
                else "a finite number of seconds >= 0 (0 or None: no limit)")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return None if value == math.inf else (float(value) or None)


def positive_seconds(value: Any, name: str, none_is_no_limit: bool = False) -> float | None:
    """A finite number of seconds > 0 (``open_timeout``, ``read_timeout``); with
    ``none_is_no_limit``, also ``None`` or infinity -> ``None`` (``give_up_after``,
    ``max_seconds``). Refused up front, naming the argument: an ``open_timeout`` of -1 gave
    up on every URL, a ``max_seconds`` of -1 read a file to no result without a word."""
    if none_is_no_limit and (value is None or (isinstance(value, numbers.Real) and value == math.inf)):
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value <= 0):
        what = "a number of seconds > 0" + (" (None: no limit)" if none_is_no_limit else "")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def call_with_timeout(fn: Callable[[], T], timeout: float | None, what: str) -> T:
    """Run ``fn()`` in a helper thread and give up after ``timeout`` seconds (``None``, 0 or
    infinity: no limit, in this thread), raising :func:`decoder_hung`'s TimeoutError.

    Decoders can loop forever inside C code (decord's ``get_batch`` on over-reported
    frame counts); the caller then abandons that daemon thread and goes on with the next
    file (extraction's DataLoader workers end with their process).
    """
    if not timeout or timeout == math.inf:  # no limit (inf: Thread.join would overflow)
        return fn()
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="videoact-decode")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise decoder_hung(what, timeout)
    if "error" in box:
        raise box["error"]
    return box["value"]


def list_videos(
    root: str | os.PathLike, extensions: Iterable[str] = VIDEO_EXTENSIONS, frame_folders: bool = False
) -> list[Path]:
    """Video files under ``root`` (recursive, following symlinks), sorted by relative path.

    Extensions match case-insensitively. Hidden files and folders (names starting
    with ".", e.g. macOS "._clip.mp4" files or unfinished temporaries) are skipped.
    A ``root`` that is itself a video file gives ``[root]``. With ``frame_folders``, a
    folder holding ``img_<n>.jpg`` frames (what ``videoact decode-frames`` writes, read
    by :class:`FrameFolderReader`) is listed too, as one video.

    A folder that cannot be listed (no permission) is listed itself, as one entry:
    opening it (:func:`open_video`) fails with the reason, so every command reports it
    among its failures instead of leaving its videos out without a word.
    """
    root = Path(root)
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    if root.is_file():
        return [root] if root.suffix.lower() in exts else []
    if not root.is_dir():
        if not os.path.exists(root):
            raise FileNotFoundError(f"{root}: no such directory")
        # A named pipe (a shell's <(...)) or a device: said as what it is, not "no such directory"
        kind = "a named pipe" if root.is_fifo() else "a device or socket"
        raise NotADirectoryError(f"{root}: not a folder or a video file ({kind})")
    found: list[Path] = []
    # The real paths of each walked folder and of the folders above it. A folder whose real
    # path is among those above it is a symlink loop, and left; one reached again along
    # another path (train/walk -> ../pool/walk) is no loop and is listed under both paths
    # (before: every folder walked once, so one of the two paths was left out without a word,
    # which one depending on the order of the walk).
    chains: dict[str, frozenset[str]] = {}

    def unlistable(error: OSError) -> None:
        if error.filename is not None:
            found.append(Path(error.filename))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unlistable):
        real = os.path.realpath(dirpath)
        above = chains.get(os.path.dirname(dirpath), frozenset())
        if real in above:  # symlink loop
            dirnames[:] = []
            continue
        chains[dirpath] = above | {real}
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if frame_folders and any(_frame_number(name) is not None for name in filenames):
            found.append(Path(dirpath))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
