"""Which frame indices to read from a video of ``num_frames`` verified frames.

All functions return a plain ``list[int]`` of valid indices (``0 <= i < num_frames``),
sorted in increasing order, and raise ``ValueError`` for ``num_frames <= 0`` or bad
parameters. Random choices (``train=True``) come from ``generator``:

* ``None``: torch's global RNG (which DataLoader seeds differently in each worker),
* an ``int`` seed, a ``torch.Generator``, a ``numpy.random.Generator`` or a
  ``random.Random``: deterministic for a given seed/state.

Modes of :func:`sample_indices`:

* ``"uniform"`` (TSN): :func:`uniform_segments` - ``num_segments`` frames spread over
  the whole video.
* ``"dense"``: :func:`dense_indices` - ``num_frames_out`` frames ``stride`` apart
  (a contiguous window); train: random window position, eval: centred window.
* ``"fps"``: :func:`fps_indices` (or :func:`timestamp_indices` when ``timestamps`` are
  given, for variable-frame-rate video) - every frame at ``target_fps``.
* ``"all"``: every frame.
"""
from __future__ import annotations

import math
import random
from typing import Any, Sequence

import numpy as np

__all__ = [
    "MODES",
    "sample_indices",
    "uniform_segments",
    "dense_indices",
    "fps_indices",
    "timestamp_indices",
    "spread",
]

MODES = ("uniform", "dense", "fps", "all")

# A generator for random choices: see the module docstring.
RNG = Any


def _check_num_frames(num_frames: int) -> int:
    if isinstance(num_frames, bool) or int(num_frames) != num_frames:
        raise ValueError(f"num_frames must be an integer, got {num_frames!r}")
    num_frames = int(num_frames)
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive (the video has no frames), got {num_frames}")
    return num_frames


def _positive_int(name: str, value: Any) -> int:
    if value is None or isinstance(value, bool) or int(value) != value or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _randint(rng: RNG, low: int, high: int) -> int:
    """A uniform integer in ``[low, high)`` from any supported generator."""
    if high - low <= 1:
        return low
    if rng is None or hasattr(rng, "manual_seed"):  # torch.Generator or torch's global RNG
        import torch

        return int(torch.randint(low, high, (1,), generator=rng).item())
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high))
    if isinstance(rng, random.Random):
        return rng.randrange(low, high)
    raise TypeError(f"unsupported generator {type(rng).__name__}")


def _as_rng(generator: RNG) -> RNG:
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return random.Random(int(generator))
    return generator


def uniform_segments(
    num_frames: int, num_segments: int, train: bool = False, rng: RNG = None
) -> list[int]:
    """TSN sampling: one frame from each of ``num_segments`` equal segments.

    Segment ``k`` covers frames ``[k*n/N, (k+1)*n/N)`` (``n = num_frames``,
    ``N = num_segments``). Eval: its centre frame ``floor((2k+1)*n / (2N))``; a centre that
    falls exactly between two frames takes the later one in the first half of the
    segments and the earlier one in the second, so that the frames taken from a video
    played backwards are those taken from it, reversed (for an even ``N``; with an odd
    ``N`` and an even ``n`` the middle segment's centre has two frames and no mirror).
    Train: a uniformly random frame of the segment.

    Short videos (``n < N``): segments are shorter than a frame, so the centre rule is
    used in train and eval alike - every frame appears, repeated as evenly as possible,
    in order (e.g. ``n=3, N=8 -> [0, 0, 0, 1, 1, 2, 2, 2]``). The output always has
    ``N`` entries.
    """
    n = _check_num_frames(num_frames)
    segments = _positive_int("num_segments", num_segments)
    rng = _as_rng(rng)
    out = []
    for k in range(segments):
        if train and n >= segments:
            start, end = (k * n) // segments, ((k + 1) * n) // segments
            out.append(start + _randint(rng, 0, end - start))
        else:
            # floor alone took the later frame at every tie: 16 frames in 8 segments gave
            # 1, 3, ..., 15, and the same video reversed 0, 2, ..., 14 of it, which let an
            # order-blind model tell a clip from its reversal.
            num, den = (2 * k + 1) * n, 2 * segments
            out.append(num // den if num % den or 2 * k + 1 < segments else num // den - 1)
    return out


def dense_indices(
    num_frames: int, stride: int, count: int | None = None, start: int = 0
) -> list[int]:
    """Frames ``start, start+stride, start+2*stride, ...``.

    Without ``count``: every such frame in the video. With ``count``: exactly
    ``count`` indices; when the video ends first, the last frame reached is repeated
    to pad (e.g. ``num_frames=10, stride=4, count=5 -> [0, 4, 8, 8, 8]``).
    """
    n = _check_num_frames(num_frames)
    stride = _positive_int("stride", stride)
    if isinstance(start, bool) or int(start) != start or not 0 <= int(start) < n:
        raise ValueError(f"start must be a frame index in [0, {n}), got {start!r}")
    out = list(range(int(start), n, stride))
    if count is not None:
        count = _positive_int("count", count)
        out = out[:count] + [out[-1]] * max(0, count - len(out))
    return out


def fps_indices(
    num_frames: int, video_fps: float, target_fps: float, max_frames: int | None = None
) -> list[int]:
    """Frames at ``target_fps`` from a constant-rate video at ``video_fps``.

    Frame ``k`` of the output is ``floor(k * video_fps / target_fps)`` (the frame on
    screen at time ``k / target_fps``), for times up to the last frame's start
    ``(num_frames - 1) / video_fps``. ``target_fps >= video_fps`` gives every frame.
    ``max_frames`` keeps at most that many, spread over the whole span (:func:`spread`).
    """
    n = _check_num_frames(num_frames)
    video_fps, target_fps = _positive_float("video_fps", video_fps), _positive_float(
        "target_fps", target_fps
    )
    if target_fps >= video_fps:
        out = list(range(n))
    else:
        step = video_fps / target_fps
        count = math.floor((n - 1) / step + 1e-9) + 1
        out = [min(n - 1, math.floor(k * step + 1e-9)) for k in range(count)]
    return spread(out, max_frames)


def timestamp_indices(
    timestamps: Sequence[float] | np.ndarray, target_fps: float, max_frames: int | None = None
) -> list[int]:
    """Frames at ``target_fps`` using real frame times (variable-frame-rate video).

    For each time ``t0 + k / target_fps`` up to the last frame's time, the frame on
    screen then (the last one with ``timestamp <= t``) is taken; a frame is taken at
    most once, so where the video's own rate is at most ``target_fps`` every frame is
    used. The last frame has no next frame to bound it: it is on screen for as long as
    the interval before it, so it is also taken when that interval is at least
    ``1 / target_fps``. For constant-rate timestamps this equals :func:`fps_indices`
    (float32 times included: times are compared with float32 precision), except where
    a frame starts less than one float32 unit of its absolute time after a grid time
    (under 0.01 ms in the first minute, 0.07 ms at ten minutes): that frame is taken,
    one frame later than :func:`fps_indices` takes. ``max_frames``
    keeps at most that many, spread over the whole span (:func:`spread`).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    n = _check_num_frames(len(ts))
    target_fps = _positive_float("target_fps", target_fps)
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
        raise ValueError("timestamps must be finite and non-decreasing")
    rel = ts - ts[0]
    # A grid time that coincides with a frame's start (0.1 s and frame 3 at 30 -> 10
    # fps) must pick that frame although the times are rounded. Decoders report float32
    # times (decord), off by up to half a float32 unit of the absolute time: ~1e-6 s at
    # 16 s, 1e-4 s at 1 h. One unit covers that and stays far below a frame interval.
    tol = np.maximum(1e-6, float(np.finfo(np.float32).eps) * np.abs(ts))
    start = rel - tol  # non-decreasing: tol grows far slower than the times
    count = math.floor((rel[-1] + tol[-1]) * target_fps) + 1
    grid = np.arange(count, dtype=np.float64) / target_fps
    picked = np.searchsorted(start, grid, side="right") - 1
    out = [int(i) for i in dict.fromkeys(picked.tolist())]  # unique, order kept
    # The grid stops at the last frame's start, so it can fall just short of it (120
    # frames at 29.97 fps sampled at 60 fps: 3.9667 s < 3.9706 s).
    if n > 1 and out[-1] != n - 1 and rel[-1] - rel[-2] >= 1.0 / target_fps - 2 * tol[-1]:
        out.append(n - 1)
    return spread(out, max_frames)


def spread(indices: Sequence[int], max_frames: int | None) -> list[int]:
    """At most ``max_frames`` of ``indices``, evenly spread from the first to the last
    (the whole time span, not the first ``max_frames``); all of them when there are no
    more. What ``max_frames`` means everywhere: feature extraction caps a video so."""
    out = list(indices)
    if max_frames is None or len(out) <= _positive_int("max_frames", max_frames):
        return out
    import torch  # torch's float32 linspace: the frames every existing feature cache was made of

    return [out[i] for i in torch.linspace(0, len(out) - 1, int(max_frames)).round().long().tolist()]


def _positive_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return v


def sample_indices(
    num_frames: int,
    mode: str,
    *,
    num_segments: int | None = None,
    stride: int | None = None,
    num_frames_out: int | None = None,
    fps: float | None = None,
    target_fps: float | None = None,
    timestamps: Sequence[float] | np.ndarray | None = None,
    max_frames: int | None = None,
    train: bool = False,
    generator: RNG = None,
) -> list[int]:
    """Frame indices for one clip of a video with ``num_frames`` verified frames.

    One call for one clip, as a data loader of frames needs it. What ``videoact extract``
    caches is chosen by :meth:`videoact.extract.SamplingSpec.indices` from the same
    functions (:func:`uniform_segments`, :func:`dense_indices`, ...), with two differences:
    there ``max_frames`` applies to every mode, and timestamps of another length than the
    frames fall back to ``fps`` instead of raising.

    Args:
        num_frames: frames in the video (``len(reader)``); must be > 0.
        mode: "uniform", "dense", "fps" or "all" (see the module docstring).
        num_segments: "uniform": how many frames (one per segment).
        stride: "dense": distance between frames (default 1).
        num_frames_out: "dense": how many frames; ``None`` takes every
            ``stride``-th frame of the whole video.
        fps, target_fps: "fps": the video's rate and the wanted rate.
        timestamps: "fps": per-frame seconds ``[num_frames]``; when given they are used
            instead of ``fps`` (correct for variable-frame-rate video).
        max_frames: "fps" / "all": keep at most this many, spread over the whole video
            (:func:`spread`), as feature extraction's ``max_frames`` does.
        train: random segment positions ("uniform") / random window start ("dense");
            eval is deterministic (segment centres / centred window).
        generator: source of randomness for ``train`` (see the module docstring).

    Returns:
        ``list[int]`` of sorted indices in ``[0, num_frames)``; "uniform" and "dense"
        with ``num_frames_out`` always return exactly the requested number (short
        videos repeat frames; the rules are in :func:`uniform_segments` and
        :func:`dense_indices`).
    """
    n = _check_num_frames(num_frames)
    if mode == "uniform":
        if num_segments is None:
            raise ValueError("mode 'uniform' needs num_segments")
        return uniform_segments(n, num_segments, train=train, rng=generator)
    if mode == "dense":
        stride = 1 if stride is None else _positive_int("stride", stride)
        if num_frames_out is None:
            return dense_indices(n, stride)
        count = _positive_int("num_frames_out", num_frames_out)
        span = (count - 1) * stride + 1  # frames covered by the window
        room = max(0, n - span)  # possible start positions beyond 0
        start = _randint(_as_rng(generator), 0, room + 1) if train else room // 2
        return dense_indices(n, stride, count=count, start=start)
    if mode == "fps":
        if target_fps is None:
            raise ValueError("mode 'fps' needs target_fps")
        if timestamps is not None:
            if len(timestamps) != n:
                raise ValueError(f"got {len(timestamps)} timestamps for {n} frames")
            return timestamp_indices(timestamps, target_fps, max_frames)
        if fps is None:
            raise ValueError("mode 'fps' needs fps (the video's frame rate) or timestamps")
        return fps_indices(n, fps, target_fps, max_frames)
    if mode == "all":
        return spread(range(n), max_frames)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
