"""Long videos: sliding windows -> a timeline of per-window predictions -> action segments.

``classify_timeline(classifier, "long.mp4", window=2.0, stride=0.5)``:

1. A time grid of sample points ``(j + 0.5) / feature_rate`` seconds covers the video
   (``feature_rate`` defaults to ``T / window``, ``T`` = the checkpoint's
   ``num_segments``). Each grid point takes the frame shown at that time. The CNN runs
   **once per sampled frame**, in batches, while the file is decoded front to back.
2. Windows start every ``stride`` seconds. A window looks at ``T`` points: the centres
   of ``T`` equal segments of ``[start, start + window)``, each mapped to the grid point
   of the grid cell it falls in (its nearest; on a cell boundary, the later one). Exact
   when ``stride`` is a whole number of grid steps ``1 / feature_rate``, as the default
   stride is (about ``window / 4``). With the default rate a window sees the frames on
   screen at the centres of its ``T`` segments (TSN segment centres, by time).
   ``VideoClassifier.predict`` on the window's frames picks centres by frame index: the
   two agree, and so do their probabilities, when the frame rate is whole and each window
   starts on the grid and on a frame (the stride a whole number of grid steps and
   ``start * fps`` a whole number: with ``T = 8``, a 2 s window (grid step 0.25 s) and
   25 fps, a stride of 1 s; not 0.5 s, whose odd windows start between two frames, nor
   0.2 s, off the grid); otherwise picks differ, by a frame between frames and by up to
   half a grid step off the grid. The last window, aligned to the video's end, is off the
   grid: its points are the grid's nearest, up to half a grid step from its own centres.
   A video shorter than the window is one window over all of it, its grid made T points
   long.
3. Each window owns the time between the midpoints to its neighbours' centres (the
   first from 0, the last to the end). Consecutive windows with the same top label
   merge into an action segment ``(label, start, end, mean score)``; a window whose top
   probability is below ``threshold`` ("no confident action") ends a segment.

Memory stays bounded on hour-long files: only the features that pending windows still
need are kept. :func:`write_timeline` writes JSON or CSV; :func:`annotate_video` writes
an annotated copy of the video (:mod:`videoact.overlay`).
"""
from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from .inference import VideoClassifier

DEFAULT_WINDOW = 2.0


@dataclass
class WindowPrediction:
    """One window ``[start, end)`` seconds: its top-k and (``label``) the accepted top label."""

    start: float
    end: float
    top: list[tuple[str, float]]
    label: str | None
    probs: torch.Tensor  # [C]
    frame_indices: list[int] = field(default_factory=list)

    @property
    def centre(self) -> float:
        return 0.5 * (self.start + self.end)

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 4), "end": round(self.end, 4), "label": self.label,
                "top": [{"label": l, "prob": round(p, 6)} for l, p in self.top]}


@dataclass
class ActionSegment:
    """Consecutive windows with the same top label: ``[start, end)`` seconds."""

    label: str
    start: float
    end: float
    score: float  # mean probability of ``label`` over the windows
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "start": round(self.start, 4), "end": round(self.end, 4),
                "score": round(self.score, 6), "windows": self.windows}


@dataclass
class Timeline:
    """Per-window predictions and merged segments of one video."""

    source: str
    duration: float
    fps: float
    window: float
    stride: float
    feature_rate: float
    frames_processed: int  # CNN passes (distinct sampled frames)
    windows: list[WindowPrediction]
    segments: list[ActionSegment]
    bounds: list[float] = field(default_factory=list)  # window k owns [bounds[k], bounds[k+1])

    def window_at(self, t: float) -> int:
        """Index of the window that owns time ``t`` (seconds)."""
        k = int(np.searchsorted(np.asarray(self.bounds), t, side="right")) - 1
        return min(max(k, 0), len(self.windows) - 1)

    def segment_at(self, t: float) -> ActionSegment | None:
        """The segment covering time ``t``, or None (a "no confident action" stretch)."""
        for seg in self.segments:
            if seg.start <= t < seg.end:
                return seg
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "duration": round(self.duration, 4), "fps": self.fps,
            "window": self.window, "stride": self.stride, "feature_rate": self.feature_rate,
            "frames_processed": self.frames_processed,
            "segments": [s.to_dict() for s in self.segments],
            "windows": [w.to_dict() for w in self.windows],
        }


def window_starts(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """``[(start, end)]`` windows every ``stride`` s; the last one is aligned to the end.

    A video shorter than ``window`` gets one window over all of it.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive seconds, got window={window}, stride={stride}")
    if duration <= window + 1e-9:
        return [(0.0, duration)]
    out = []
    k = 0
    eps = 1e-6
    while k * stride + window <= duration + eps:
        out.append((k * stride, k * stride + window))
        k += 1
    if out[-1][1] < duration - eps:  # cover the tail
        out.append((duration - window, duration))
    return out


def merge_segments(windows: Sequence[WindowPrediction], bounds: Sequence[float],
                   classes: Sequence[str]) -> list[ActionSegment]:
    """Merge consecutive windows with the same (non-None) label into segments."""
    segments: list[ActionSegment] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            label = windows[run[0]].label
            assert label is not None
            c = list(classes).index(label)
            score = float(np.mean([float(windows[k].probs[c]) for k in run]))
            segments.append(ActionSegment(label, float(bounds[run[0]]), float(bounds[run[-1] + 1]), score, len(run)))
            run.clear()

    for k, w in enumerate(windows):
        if w.label is None or (run and windows[run[-1]].label != w.label):
            flush()
        if w.label is not None:
            run.append(k)
    flush()
    return segments


def _ownership_bounds(windows: Sequence[tuple[float, float]], duration: float) -> list[float]:
    centres = [0.5 * (a + b) for a, b in windows]
    inner = [0.5 * (centres[k] + centres[k + 1]) for k in range(len(centres) - 1)]
    return [0.0, *inner, float(duration)]


def window_settings(classifier: "VideoClassifier", window: float | None = None, stride: float | None = None,
                    feature_rate: float | None = None) -> tuple[float, float, float]:
    """``(window, stride, feature_rate)`` as :func:`classify_timeline` will use them: the
    defaults filled in for this classifier, and a stride longer than the window refused
    (``ValueError``), so that a caller can check them once before many videos."""
    for name, value in (("window", window), ("stride", stride), ("feature_rate", feature_rate)):
        if value is not None and (isinstance(value, bool) or not (isinstance(value, numbers.Real)
                                                                   and 0 < value < math.inf)):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    T = int(classifier.num_segments or 16)
    sampling = getattr(classifier, "sampling", None)
    if window is None and feature_rate is None and getattr(sampling, "mode", None) == "fps":
        # Trained on frames at a fixed rate: its windows are T frames at that rate.
        feature_rate = float(sampling.target_fps)
    if window is None:
        window = T / feature_rate if feature_rate else DEFAULT_WINDOW
    window = float(window)
    if feature_rate is None:
        feature_rate = T / window
    feature_rate = float(feature_rate)
    if stride is None:  # about window / 4, on the grid: T = 6 gave windows between its points
        stride = max(1, int(window * feature_rate / 4.0 + 0.5)) / feature_rate
    stride = float(stride)
    if stride > window * (1 + 1e-9):
        # Windows own the time around their centres: the gaps would get a label no window saw.
        raise ValueError(f"stride {stride:g} s is longer than the window ({window:g} s): the time between "
                         "windows would be labelled without being looked at; use a stride of at most the window")
    return window, stride, feature_rate


def classify_timeline(classifier: "VideoClassifier", video: str | os.PathLike, *, window: float | None = None,
                      stride: float | None = None, feature_rate: float | None = None, top_k: int = 5,
                      threshold: float = 0.0, batch_size: int = 32,
                      progress: Callable[[int, int], None] | None = None,
                      file_timeout: float | None = None) -> Timeline:
    """Classify a long video as a timeline of windows and merged action segments.

    Args:
        classifier: a :class:`~videoact.inference.VideoClassifier`.
        video: a video file or frame folder.
        window: window length in seconds (default ``T / feature_rate``, or 2 s).
        stride: step between window starts in seconds (default: about ``window / 4``, a
            whole number of grid steps, so every window sees exact segment centres); at
            most ``window``: each moment of the timeline is labelled by a window that saw it.
        feature_rate: sampled frames per second (default ``T / window``; with neither
            given, a checkpoint trained on ``fps`` sampling sees frames at its rate, as
            :func:`videoact.stream.default_feature_rate` gives the stream).
        top_k: labels per window.
        threshold: windows whose top probability is below it get ``label=None``.
        batch_size: frames per CNN batch.
        progress: called as ``progress(done, total)`` in sampled frames.
        file_timeout: seconds allowed for opening and verifying the file; a decoder still
            busy then raises ``TimeoutError`` (it is left in a daemon thread). ``None``: no limit.

    Raises:
        VideoDecodeError: the file cannot be read (the message names it).
    """
    from .decode import open_video, time_limit

    for name, value in (("top_k", top_k), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(threshold, bool) or not (isinstance(threshold, numbers.Real) and 0 <= threshold <= 1):
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    file_timeout = time_limit(file_timeout, "file_timeout")
    window, stride, feature_rate = window_settings(classifier, window, stride, feature_rate)
    T = int(classifier.num_segments or 16)
    top_k = max(1, min(int(top_k), len(classifier.classes)))

    from .decode import call_with_timeout

    def open_and_verify() -> Any:
        reader = open_video(video)
        return reader, reader.timestamps()  # [n] seconds, verified

    # A decoder that does not return (a damaged container it scans for ever) fails this
    # video after file_timeout seconds instead of hanging the caller.
    reader, ts = call_with_timeout(open_and_verify, file_timeout, f"{video}: opening")
    with reader:
        n = len(reader)
        fps = float(reader.fps)
        # The last frame lasts as long as the frames before it (a variable-rate video's
        # nominal rate can be far from its last frames' rate).
        step = float(np.median(np.diff(ts[-6:]))) if n > 1 else 0.0
        duration = float(ts[-1] + (step if step > 0 else 1.0 / fps if fps > 0 else 0.0))
        spans = window_starts(duration, window, stride)
        if duration < window:
            # One window over the whole (short) video: a grid of T points over it puts them
            # at its T segment centres, the frames predict() takes (at the usual rate a
            # 0.5 s clip had one grid point, so the window saw one frame T times).
            feature_rate = max(feature_rate, T / duration)

        # Grid of sample points and the frame shown at each (last frame with ts <= t).
        num_grid = max(1, int(math.ceil(duration * feature_rate - 0.5)))
        grid_t = (np.arange(num_grid) + 0.5) / feature_rate
        grid_frame = np.clip(np.searchsorted(ts, grid_t + 1e-6, side="right") - 1, 0, n - 1)

        # For each window, the grid points at its T segment centres.
        window_grid = []
        for a, b in spans:
            centres = a + (np.arange(T) + 0.5) * (b - a) / T
            # The cell holding each centre. (np.round(x - 0.5) rounded half to even: a window
            # starting half-way between grid points took points 2, 2, 4, 4, ... twice each.)
            cells = np.floor(centres * feature_rate + 1e-9).astype(np.int64)
            window_grid.append(np.clip(cells, 0, num_grid - 1))
        needed_frames = sorted(set(int(grid_frame[j]) for g in window_grid for j in g))
        # Frames in decode order and the first window that needs each one (for freeing memory).
        last_grid_of_window = [int(g.max()) for g in window_grid]
        first_grid_of_window = [int(g.min()) for g in window_grid]

        features: dict[int, torch.Tensor] = {}
        results: list[WindowPrediction | None] = [None] * len(spans)
        next_window = 0
        done_frames = 0
        # Highest grid index whose frame is computed: grid_frame is non-decreasing in j.
        frame_to_last_grid = {}
        for j in range(num_grid):
            frame_to_last_grid[int(grid_frame[j])] = j

        def evaluate_ready(upto_grid: int, final: bool = False) -> None:
            nonlocal next_window
            batch = []
            while next_window < len(spans) and (final or last_grid_of_window[next_window] <= upto_grid):
                batch.append(next_window)
                next_window += 1
            for start in range(0, len(batch), 64):
                ks = batch[start:start + 64]
                x = torch.stack([torch.stack([features[int(grid_frame[j])] for j in window_grid[k]]) for k in ks])
                probs = classifier.predict_features(x)  # [B, T, D] -> [B, C]
                for k, p in zip(ks, probs):
                    top = classifier.top_labels(p, top_k)
                    label = top[0][0] if top[0][1] >= threshold else None
                    results[k] = WindowPrediction(spans[k][0], spans[k][1], top, label, p,
                                                  [int(grid_frame[j]) for j in window_grid[k]])
            # Free features no pending window needs (grid_frame is non-decreasing).
            if next_window < len(spans):
                keep_from = int(grid_frame[first_grid_of_window[next_window]])
                for f in [f for f in features if f < keep_from]:
                    del features[f]

        pending_idx: list[int] = []
        pending_frames: list[np.ndarray] = []

        def flush() -> None:
            nonlocal done_frames
            if not pending_idx:
                return
            feats = classifier.frame_features(np.stack(pending_frames))  # [B, D], one pass per frame
            for f, v in zip(pending_idx, feats):
                features[f] = v
            done_frames += len(pending_idx)
            upto = frame_to_last_grid.get(pending_idx[-1], -1)
            pending_idx.clear()
            pending_frames.clear()
            if progress is not None:
                progress(done_frames, len(needed_frames))
            evaluate_ready(upto)

        for index, _t, frame in reader.iter_frames(needed_frames):
            pending_idx.append(index)
            pending_frames.append(frame)
            if len(pending_idx) >= batch_size:
                flush()
        flush()
        evaluate_ready(num_grid, final=True)

    windows = [w for w in results if w is not None]
    bounds = _ownership_bounds(spans, duration)
    segments = merge_segments(windows, bounds, classifier.classes)
    return Timeline(str(video), duration, fps, window, stride, feature_rate, done_frames, windows, segments, bounds)


# ---------------------------------------------------------------------------- output


_CSV_COLUMNS = ["source", "kind", "start", "end", "label", "score"]


def timeline_csv_header(top_k: int) -> list[str]:
    """``source, kind, start, end, label, score``, then ``top1, prob1, ..., top{k}, prob{k}``, then
    ``error``: a column per rank, so a class name holding any character (``|``, ``:``, a comma)
    reads back as it is; ``error`` says why an input failed (kind ``failed``), empty otherwise.
    (Before 2026-11-30: ``CSV_HEADER`` and one ``top`` column, ``label:prob|...``, no ``error``.)"""
    ranks = [name for rank in range(1, top_k + 1) for name in (f"top{rank}", f"prob{rank}")]
    return _CSV_COLUMNS + ranks + ["error"]


def timeline_csv_rows(timeline: Timeline, top_k: int | None = None) -> list[list[str]]:
    """Rows of :func:`timeline_csv_header` with the same ``top_k`` (default: the longest top-k
    of this timeline's windows; several timelines in one file need one ``top_k``, as
    :func:`write_timeline` gives them): one per segment (kind ``segment``, empty rank
    columns) then per window. ``label`` is empty for a window below the threshold."""
    if top_k is None:
        top_k = max((len(w.top) for w in timeline.windows), default=0)
    blank = [""] * (2 * top_k)
    rows = []
    for s in timeline.segments:
        rows.append([timeline.source, "segment", f"{s.start:.4f}", f"{s.end:.4f}", s.label, f"{s.score:.6f}", *blank, ""])
    for w in timeline.windows:
        ranks = [v for l, p in w.top[:top_k] for v in (l, f"{p:.6f}")]
        rows.append([timeline.source, "window", f"{w.start:.4f}", f"{w.end:.4f}", w.label or "",
                     f"{w.top[0][1]:.6f}", *ranks, *blank[len(ranks):], ""])
    return rows


def write_timeline(timelines: Timeline | Iterable[Timeline], path: str | os.PathLike,
                   failures: Sequence[tuple[str, str]] = ()) -> Path:
    """Write one or more timelines atomically: ``.csv`` (:func:`timeline_csv_rows`) or JSON.

    ``failures`` are ``(source, reason)`` pairs for inputs that gave no timeline, written
    after the timelines so the file accounts for every input: CSV rows of kind ``failed``
    (``source`` and ``error`` filled in), JSON ``{"source": ..., "error": ...}`` objects
    in the list (a single :class:`Timeline` is written as one object, without them).
    """
    from .atomic import atomic_write_text

    path = Path(path)
    items = [timelines] if isinstance(timelines, Timeline) else list(timelines)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        top_k = max((len(w.top) for t in items for w in t.windows), default=0)
        writer.writerow(timeline_csv_header(top_k))
        for t in items:
            writer.writerows(timeline_csv_rows(t, top_k))
        for source, reason in failures:
            writer.writerow([source, "failed", "", "", "", "", *[""] * (2 * top_k), reason])
        atomic_write_text(path, buf.getvalue())
    else:
        if isinstance(timelines, Timeline):
            if failures:
                raise ValueError("write_timeline: failures need a list of timelines, not one Timeline")
            data: Any = timelines.to_dict()
        else:
            data = [t.to_dict() for t in items] + [{"source": s, "error": r} for s, r in failures]
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def annotate_video(video: str | os.PathLike, timeline: Timeline, out: str | os.PathLike, *,
                   top_k: int = 3) -> Path:
    """Write a copy of ``video`` with each frame's window top-k and segment drawn on it.

    The copy has a constant rate (the video's): output frame ``k`` shows the frame on
    screen ``k / fps`` seconds after the first frame, so a variable-rate video (a phone's)
    keeps its timing, its frames repeated or dropped where they came slower or faster
    than that rate.
    Written to a temporary name and renamed at the end; on an error nothing is left.
    """
    from .decode import open_video
    from .overlay import AtomicVideoWriter

    with open_video(video) as reader:
        rate = float(reader.fps) if reader.fps and reader.fps > 0 else 25.0
        with AtomicVideoWriter(out, rate) as writer:
            pending: np.ndarray | None = None  # the last drawn frame, written once the next one's time is known
            written, t0 = 0, None
            for _index, t, frame in reader.iter_frames():
                t0 = t if t0 is None else t0
                if pending is not None:
                    # the previous frame fills the output frames up to this one's time
                    for _ in range(int(round((t - t0) * rate)) - written):
                        writer.write(pending, bgr=True)
                        written += 1
                pending = _annotated(frame, t, timeline, top_k)
            if pending is not None:
                writer.write(pending, bgr=True)  # the last frame, once
    return Path(out)


def _annotated(frame: np.ndarray, t: float, timeline: Timeline, top_k: int) -> np.ndarray:
    """A BGR copy of the RGB ``frame`` (shown at ``t`` s) with its window and segment drawn on it."""
    from .overlay import draw_overlay

    if timeline.windows:
        w = timeline.windows[timeline.window_at(t)]
        seg = timeline.segment_at(t)
        headline = seg.label if seg is not None else "no confident action"
        status = [f"t={t:6.2f}s  window {w.start:.2f}-{w.end:.2f}s"]
        if seg is not None:
            status.append(f"segment {seg.start:.2f}-{seg.end:.2f}s  score {seg.score:.2f}")
        return draw_overlay(frame, w.top[:top_k], label=w.label, headline=headline, status=status,
                            confident=w.label is not None, bgr_output=True)
    return np.ascontiguousarray(frame[..., ::-1])
