"""Online inference on live cameras, network streams and video files, without falling behind.

One engine serves every source::

    source --capture thread--> [1-slot buffer] --inference thread--> results
                          \\--> [1-slot buffer] --> display / recording (optional)

* The capture thread keeps only the **newest** frame. A frame overwritten before the
  inference thread looked at it is *dropped* and counted, never queued: the known
  failure of webcam demos (reading stale frames from a growing buffer and falling tens
  of seconds behind) cannot happen. For a file read as fast as possible nothing is
  dropped: the capture thread waits for the consumers instead (for the display, only
  while a display loop keeps taking frames: see :class:`StreamEngine`).
* :class:`StreamClassifier` (usable on its own, without threads) computes per-frame CNN
  features once per sampled frame, at ``feature_rate`` frames per second of source
  time, into a ring buffer of the last ``T`` vectors (``T`` = the checkpoint's
  ``num_segments``); so each new frame costs one CNN pass, not ``T``. The temporal
  model runs on the buffer at ``predict_rate``; probabilities are smoothed with an
  exponential moving average; below ``threshold`` the label is ``None`` ("no
  confident action").
* Every :class:`StreamResult` carries the source timestamp of its newest frame, the
  measured latency from capture to result, the dropped-frame count and the rates.

Sources (:mod:`videoact.sources`, :func:`open_source`): a camera index (``"0"``), a video
file (paced at its own frame rate with ``realtime=True``, else as fast as possible) or an
RTSP/HTTP URL that OpenCV's FFmpeg opens. Live sources reconnect with back-off when they
drop (said on the log callback); a file source ends cleanly at its end. Memory is bounded: two
1-frame slots, the ``[T, D]`` ring and a bounded result queue.

Library use::

    from videoact.inference import VideoClassifier
    from videoact.stream import StreamClassifier, stream_predictions

    clf = VideoClassifier.from_checkpoint("runs/x/best.pt")
    for r in stream_predictions("0", clf, max_seconds=30):     # webcam 0
        print(f"{r.timestamp:6.2f}s {r.label or '-'} {r.latency * 1000:.0f} ms")

    sc = StreamClassifier(clf, feature_rate=8)                # inside your own loop
    result = sc.push(frame_rgb_uint8, timestamp_seconds)       # StreamResult or None
"""
from __future__ import annotations

import collections
import math
import numbers
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

# The capture side has its own module; its public names are importable from here too.
from .sources import (DEFAULT_LIVE_FPS, URL_SCHEMES, CameraSource, FileSource, Frame, FrameSource,  # noqa: F401
                      IterableSource, LogFn, SourceError, URLSource, log_warning, open_source)

if TYPE_CHECKING:
    from .inference import VideoClassifier

DEFAULT_FEATURE_RATE = 8.0  # frames per second of source time that get CNN features


# =========================================================================== buffers


class BoundedBuffer:
    """A bounded FIFO between producer threads and one consumer.

    ``lossless=False``: :meth:`put` on a full buffer drops the oldest item and counts it in
    :attr:`dropped` (live sources: never fall behind). ``lossless=True``: :meth:`put` waits
    for room (files read as fast as possible).
    """

    def __init__(self, maxlen: int = 1, lossless: bool = False) -> None:
        self.maxlen = int(maxlen)
        self.lossless = bool(lossless)
        self._items: collections.deque[Any] = collections.deque()
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0
        self.put_count = 0

    def put(self, item: Any, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Store ``item``; False when the buffer was closed (the consumer is gone).

        Lossless: waits for room until the buffer is closed, ``stop`` is set or ``timeout``
        seconds passed (``None``: no limit); then, if still full, the oldest item is dropped.
        """
        with self._cond:
            if self.lossless:
                deadline = None if timeout is None else time.monotonic() + timeout
                while len(self._items) >= self.maxlen and not self._closed and not (stop and stop.is_set()):
                    wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
            if self._closed:
                return False
            if len(self._items) >= self.maxlen:
                self._dropping(self._items.popleft(), item)
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()
            return True

    def _dropping(self, old: Any, new: Any) -> None:
        """``old`` is dropped for ``new`` (under the lock): a subclass may carry something over."""

    def wait_for_room(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` s for room; True when there is room or the buffer is closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) >= self.maxlen and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._cond.wait(min(0.5, remaining))
            return True

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item, waiting up to ``timeout``; ``None`` on timeout or when closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def wait_for_item(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until an item is there or the buffer is closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(min(0.5, remaining))

    def close(self) -> None:
        """No more items: the consumer drains what is left, the producer stops waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class LatestSlot(BoundedBuffer):
    """A 1-slot buffer: a live producer overwrites the frame the consumer has not taken yet."""

    def __init__(self, lossless: bool = False, carry_gaps: bool = False) -> None:
        super().__init__(maxlen=1, lossless=lossless)
        self.carry_gaps = bool(carry_gaps)

    def _dropping(self, old: Any, new: Any) -> None:
        # ``carry_gaps`` (the inference slot only: a frame object may sit in a display slot
        # too): a frame never taken still counts for gaps, its successor carries the larger.
        if self.carry_gaps and isinstance(old, Frame) and isinstance(new, Frame):
            new.source_gap = max(old.source_gap, new.source_gap)


class FeatureRing:
    """The last ``size`` feature vectors ``[size, D]`` in a preallocated ring, with metadata."""

    def __init__(self, size: int, dim: int) -> None:
        if size < 1:
            raise ValueError(f"ring size must be >= 1, got {size}")
        self.size = int(size)
        self.data = torch.zeros(self.size, int(dim))
        self.timestamps = np.zeros(self.size)
        self.indices = np.full(self.size, -1, np.int64)
        self.count = 0  # vectors pushed since the last clear

    def push(self, vector: torch.Tensor, timestamp: float, index: int) -> None:
        slot = self.count % self.size
        self.data[slot] = vector
        self.timestamps[slot] = timestamp
        self.indices[slot] = index
        self.count += 1

    def __len__(self) -> int:
        return min(self.count, self.size)

    @property
    def full(self) -> bool:
        return self.count >= self.size

    def _order(self) -> np.ndarray:
        n = len(self)
        start = self.count - n
        return np.arange(start, start + n) % self.size

    def ordered(self) -> torch.Tensor:
        """Features oldest first ``[len, D]``."""
        return self.data[torch.from_numpy(self._order())]

    def ordered_meta(self) -> tuple[list[float], list[int]]:
        order = self._order()
        return self.timestamps[order].tolist(), self.indices[order].tolist()

    def clear(self) -> None:
        self.count = 0


class RateMeter:
    """Events per second over the last ``window`` events (monotonic clock)."""

    def __init__(self, window: int = 32) -> None:
        self.times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        self.times.append(time.monotonic() if now is None else now)

    @property
    def rate(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


class _Schedule:
    """Due times on a fixed grid of ``1 / rate`` seconds; no catching up after a stall."""

    def __init__(self, rate: float | None) -> None:
        self.period = 0.0 if rate is None else 1.0 / rate
        self.next: float | None = None

    def due(self, t: float) -> bool:
        if self.period <= 0:
            return True
        # A quarter-period tolerance keeps e.g. 8 Hz out of 25 fps at ~8 Hz, not ~6 Hz.
        return self.next is None or t >= self.next - 0.25 * self.period

    def take(self, t: float) -> None:
        if self.period <= 0:
            return
        if self.next is None:
            self.next = t + self.period
            return
        self.next += self.period
        if self.next <= t:  # fell behind (slow model, stall): re-anchor, do not burst
            self.next = t + self.period

    def reset(self) -> None:
        self.next = None


# ====================================================================== the classifier


@dataclass
class StreamResult:
    """One prediction.

    Attributes:
        timestamp: source time (seconds) of the newest frame in the buffer.
        capture_time: ``time.monotonic()`` when that frame was captured.
        latency: seconds from capture of the newest frame to this result.
        probs: smoothed probabilities ``[C]``; ``raw_probs``: this step's ``[C]``.
        top: ``[(label, prob)]`` of the smoothed probabilities, best first.
        label: the top label, or ``None`` below the threshold ("no confident action").
        frame_indices / frame_timestamps: the source frames in the buffer, oldest first.
        dropped: frames the engine never looked at (overwritten in the 1-slot buffer).
        feature_rate / prediction_rate: measured, per second of wall time.
    """

    timestamp: float
    capture_time: float
    latency: float
    probs: torch.Tensor
    raw_probs: torch.Tensor
    top: list[tuple[str, float]]
    label: str | None
    frame_indices: list[int] = field(default_factory=list)
    frame_timestamps: list[float] = field(default_factory=list)
    dropped: int = 0
    feature_rate: float = 0.0
    prediction_rate: float = 0.0
    cnn_seconds: float = 0.0
    temporal_seconds: float = 0.0

    @property
    def confident(self) -> bool:
        return self.label is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``videoact stream --no-window`` prints)."""
        return {
            "timestamp": round(self.timestamp, 4),
            "label": self.label,
            "top": [{"label": l, "prob": round(p, 5)} for l, p in self.top],
            "latency_ms": round(self.latency * 1000.0, 2),
            "dropped": self.dropped,
            "frame_index": self.frame_indices[-1] if self.frame_indices else None,
            "prediction_rate": round(self.prediction_rate, 3),
            "feature_rate": round(self.feature_rate, 3),
        }


def _is_uint8(dtype: Any) -> bool:
    if isinstance(dtype, torch.dtype):
        return dtype == torch.uint8
    try:
        return np.dtype(dtype) == np.uint8
    except TypeError:
        return False


def default_feature_rate(classifier: "VideoClassifier") -> float:
    """The checkpoint's frame rate when it was trained on fps sampling, else 8 Hz."""
    sampling = getattr(classifier, "sampling", None)
    if sampling is not None and getattr(sampling, "mode", None) == "fps":
        return float(sampling.target_fps)
    return DEFAULT_FEATURE_RATE


class StreamClassifier:
    """Push frames, get smoothed predictions; no threads (use it inside your own loop).

    Args:
        classifier: a :class:`~videoact.inference.VideoClassifier`.
        feature_rate: frames per second of *source time* that get CNN features
            (default :func:`default_feature_rate`). The window the model sees spans
            ``num_segments / feature_rate`` seconds.
        predict_rate: temporal-model runs per second of source time (default: after
            every new feature vector). It never exceeds ``feature_rate``: a prediction
            without a new feature would repeat the last one.
        ema: weight of the past in the moving average, in ``[0, 1)``: ``smoothed =
            ema * smoothed + (1 - ema) * probs``. 0 turns smoothing off.
        threshold: below this smoothed top probability the label is ``None``.
        top_k: labels in :attr:`StreamResult.top`.
        num_segments: ring size ``T`` (default: the checkpoint's ``num_segments``).
        max_gap: a jump of more than this many seconds between frames (a reconnect, a
            seek, time going backwards) clears the buffer. Default: the window length,
            at least 1 s, and at least 3 times the source's usual frame interval (a
            1-frame-a-second camera, or a caller that pushes only the frames its slow
            model keeps up with, is not a gap at every frame).
    """

    def __init__(self, classifier: "VideoClassifier", *, feature_rate: float | None = None,
                 predict_rate: float | None = None, ema: float = 0.5, threshold: float = 0.5,
                 top_k: int = 5, num_segments: int | None = None, max_gap: float | None = None) -> None:
        self.classifier = classifier
        self.feature_rate = float(feature_rate) if feature_rate is not None else default_feature_rate(classifier)
        if not (self.feature_rate > 0 and math.isfinite(self.feature_rate)):
            raise ValueError(f"feature_rate must be a positive number of frames per second, got {feature_rate}")
        if predict_rate is not None and not (predict_rate > 0 and math.isfinite(predict_rate)):
            raise ValueError(f"predict_rate must be positive, got {predict_rate}")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (weight of the past; 0 = no smoothing), got {ema}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.predict_rate = None if predict_rate is None or predict_rate >= self.feature_rate else float(predict_rate)
        self.ema = float(ema)
        self.threshold = float(threshold)
        self.top_k = int(top_k)
        if num_segments is not None and (isinstance(num_segments, bool) or int(num_segments) != num_segments
                                         or num_segments < 1):
            raise ValueError(f"num_segments must be a positive integer, got {num_segments!r}")
        self.num_segments = int(num_segments or classifier.num_segments or 16)
        window = self.num_segments / self.feature_rate
        self.max_gap = float(max_gap) if max_gap is not None else max(1.0, window)
        self._adaptive_gap = max_gap is None
        # Recent source frame intervals (s), jumps included (a 1 fps camera's first interval
        # is one: a single reset at the start); the median ignores the odd real gap.
        self._intervals: collections.deque[float] = collections.deque(maxlen=9)
        dim = int(classifier.backbone.feature_dim)
        self.ring = FeatureRing(self.num_segments, dim)
        self._feature_schedule = _Schedule(self.feature_rate)
        self._predict_schedule = _Schedule(self.predict_rate)
        self._smoothed: torch.Tensor | None = None
        self._last_ts: float | None = None
        self._feature_meter = RateMeter()
        self._predict_meter = RateMeter()
        self.frames_pushed = 0
        self.features_computed = 0
        self.predictions = 0
        self.resets = 0
        self.dropped = 0  # set by whoever feeds this (the engine's capture slot)
        self._connection: int | None = None  # of the last frame pushed with one

    @property
    def window_seconds(self) -> float:
        """Source time the buffer spans when full."""
        return self.num_segments / self.feature_rate

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    def reset(self) -> None:
        """Forget the buffer and the smoothing (e.g. after a cut or a reconnect)."""
        self.ring.clear()
        self._smoothed = None
        self._last_ts = None
        self._feature_schedule.reset()
        self._predict_schedule.reset()
        self.resets += 1

    def _gap_limit(self) -> float:
        if not self._adaptive_gap or not self._intervals:
            return self.max_gap
        return max(self.max_gap, 3.0 * float(np.median(self._intervals)))

    def _interval(self, timestamp: float, source_gap: float | None) -> float | None:
        """The longest source time without a frame since the last push: ``source_gap`` when
        the caller left frames out (they are not missing from the source)."""
        if self._last_ts is None or timestamp < self._last_ts:
            return None
        since = timestamp - self._last_ts
        return since if source_gap is None else min(float(source_gap), since)

    def _is_jump(self, interval: float | None) -> bool:
        """Whether a frame ``interval`` (:meth:`_interval`) after the last clears the buffer."""
        return self._last_ts is not None and (interval is None or interval > self._gap_limit())

    def wants(self, timestamp: float, source_gap: float | None = None) -> bool:
        """Whether a frame at ``timestamp`` would get features (cheap; no work done)."""
        if not math.isfinite(timestamp):
            return True  # for push() to refuse
        if self._is_jump(self._interval(timestamp, source_gap)):
            return True  # a jump: push() resets and takes it
        return self._feature_schedule.due(timestamp)

    @torch.no_grad()
    def push(self, frame: np.ndarray | torch.Tensor, timestamp: float, *, capture_time: float | None = None,
             index: int = -1, source_gap: float | None = None, connection: int | None = None) -> StreamResult | None:
        """Offer one frame (uint8 RGB ``[H, W, 3]``) captured at source time ``timestamp`` s.

        Returns a :class:`StreamResult` when this frame completed a due prediction
        (the buffer is full and a prediction is due), else ``None``. Frames that are not
        due at ``feature_rate`` cost nothing. ``capture_time`` (``time.monotonic()``
        when the frame arrived) defaults to now; latency is measured from it.
        ``source_gap``: when the caller left frames out since its last push (the engine
        does, for a model slower than the source), the longest source time between two
        consecutive frames since then: only a gap in the source clears the buffer.
        ``connection`` (a source's :attr:`Frame.connection`): a frame of another connection
        than the last one pushed starts a new window, however short the reconnect was. A
        frame refused (bad timestamp, shape or type) changes nothing.
        """
        if capture_time is None:
            capture_time = time.monotonic()
        timestamp = float(timestamp)
        if not math.isfinite(timestamp):  # NaN would stop the schedule for good, silently
            raise ValueError(f"timestamp must be a finite number of seconds, got {timestamp}")
        shape, dtype = getattr(frame, "shape", None), getattr(frame, "dtype", None)
        if shape is None:  # a list or another array-like
            frame = np.asarray(frame)
            shape, dtype = frame.shape, frame.dtype
        if len(shape) != 3 or shape[-1] != 3 or not _is_uint8(dtype):
            raise ValueError(f"expected one uint8 RGB frame [H, W, 3], got {dtype} {tuple(shape)}")
        if 0 in shape[:2]:  # refused here, before the counters and the schedule take it
            raise ValueError(f"expected one uint8 RGB frame [H, W, 3] with a picture, got {dtype} {tuple(shape)}")
        self.frames_pushed += 1
        if connection is not None:
            if self._connection is not None and connection != self._connection:
                self.reset()  # reconnected: the frames before are another clip
            self._connection = connection
        interval = self._interval(timestamp, source_gap)
        jump = self._is_jump(interval)  # judged by the intervals before this one
        if interval is not None and interval > 0:
            self._intervals.append(interval)
        if jump:
            self.reset()  # stale context: do not mix frames across a gap
        self._last_ts = timestamp
        if not self._feature_schedule.due(timestamp):
            return None
        self._feature_schedule.take(timestamp)

        from .inference import frames_as_tensor  # a flipped view (frame[..., ::-1]) included

        frames = frames_as_tensor(frame)
        t0 = time.perf_counter()
        vector = self.classifier.frame_features(frames[None])[0]  # one CNN pass  [D]
        cnn_seconds = time.perf_counter() - t0
        self.ring.push(vector, timestamp, index)
        self.features_computed += 1
        self._feature_meter.tick()

        if not self.ring.full or not self._predict_schedule.due(timestamp):
            return None
        self._predict_schedule.take(timestamp)
        t1 = time.perf_counter()
        raw = self.classifier.predict_features(self.ring.ordered())  # [T, D] -> [C]
        temporal_seconds = time.perf_counter() - t1
        if self._smoothed is None or self.ema == 0.0:
            self._smoothed = raw.clone()
        else:
            self._smoothed = self.ema * self._smoothed + (1.0 - self.ema) * raw
        probs = self._smoothed
        top = self.classifier.top_labels(probs, self.top_k)
        label = top[0][0] if top[0][1] >= self.threshold else None
        self.predictions += 1
        now = time.monotonic()
        self._predict_meter.tick(now)
        stamps, indices = self.ring.ordered_meta()
        return StreamResult(
            timestamp=timestamp, capture_time=capture_time, latency=now - capture_time,
            probs=probs.clone(), raw_probs=raw, top=top, label=label,
            frame_indices=indices, frame_timestamps=stamps, dropped=self.dropped,
            feature_rate=self._feature_meter.rate, prediction_rate=self._predict_meter.rate,
            cnn_seconds=cnn_seconds, temporal_seconds=temporal_seconds,
        )


# ========================================================================== the engine


class StreamEngine:
    """Capture thread + inference thread around a :class:`StreamClassifier`.

    Args:
        source: a :class:`FrameSource` or a spec for :func:`open_source`.
        classifier: a ``StreamClassifier`` or a ``VideoClassifier`` (then ``**options``
            are the ``StreamClassifier`` arguments).
        realtime: pace a file at its own frame rate (live sources always are).
        display: also keep the newest frame for a display/recording loop
            (:meth:`next_frame`). For a file read as fast as possible the capture thread
            waits for that loop, so a recording gets every frame, but only while the loop
            keeps taking frames: a frame it leaves for ``display_wait`` seconds is
            overwritten, and the slot stays lossy until it calls :meth:`next_frame` again.
            A caller that only iterates :meth:`results` is never held up by the display.
        display_wait: see ``display``; longer than a display loop's time per frame.
        max_seconds: stop after this much source time (for a live source that is lost
            and reconnecting: this much time after the start).
        log: where source messages go (reconnects); default the module logger.
        open_timeout, read_timeout, reconnect, give_up_after: for cameras and URLs, as
            :func:`open_source` takes them (``give_up_after``: seconds without a frame
            before a lost source is given up; ``None``: keep trying).
        max_pending: bound on results waiting for the consumer. Default: 256 for a file
            read as fast as possible (nothing is lost: with that many waiting, the engine
            waits for the consumer; a display loop that takes frames with
            :meth:`next_frame` and never calls :meth:`results` or :meth:`poll` gets the
            newest 256 instead, and a caller that takes neither holds the engine there), 4
            for a live or real-time source, whose oldest untaken results are dropped and
            counted (``stats()["results_dropped"]``) so that a slow consumer stays with
            the present. A result's ``latency`` is measured when it is made.

    Use as a context manager, or :meth:`start` / :meth:`stop`. :meth:`results` iterates
    the predictions; it ends at the end of a file, on :meth:`stop` or on ``max_seconds``.
    An error in a thread (an unreadable file, a backbone error) is re-raised there.
    A reconnected source starts a new window (the buffer is cleared).
    """

    def __init__(self, source: FrameSource | str | int | os.PathLike,
                 classifier: "StreamClassifier | VideoClassifier", *, realtime: bool = False,
                 display: bool = False, max_seconds: float | None = None, log: LogFn | None = None,
                 open_timeout: float = 10.0, read_timeout: float = 5.0, reconnect: bool = True,
                 give_up_after: float | None = None, max_pending: int | None = None,
                 file_timeout: float | None = 300.0, display_wait: float = 2.0, **options: Any) -> None:
        from .decode import positive_seconds

        # Checked before anything is made (the command checks its own options).
        self.max_seconds = positive_seconds(max_seconds, "max_seconds", none_is_no_limit=True)
        self.display_wait = positive_seconds(display_wait, "display_wait")
        if max_pending is not None and (isinstance(max_pending, bool) or not isinstance(max_pending, numbers.Integral)
                                        or max_pending < 1):
            raise ValueError(f"max_pending must be an integer >= 1 (None: the default), got {max_pending!r}")
        self.max_pending = None if max_pending is None else int(max_pending)
        self.log = log or log_warning
        self.source = open_source(source, realtime=realtime, open_timeout=open_timeout, read_timeout=read_timeout,
                                  reconnect=reconnect, give_up_after=give_up_after, log=self.log,
                                  file_timeout=file_timeout)
        if isinstance(classifier, StreamClassifier):
            if options:
                raise TypeError(f"options {sorted(options)} only apply when passing a VideoClassifier")
            self.classifier = classifier
        else:
            self.classifier = StreamClassifier(classifier, **options)
        self.display = bool(display)
        self._display_taken = False  # next_frame() was called at least once
        self._results_taken = False  # results() or poll() was called at least once
        self._make_buffers()  # again at start(): a URL says there whether it is a live stream or a file
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.latest: StreamResult | None = None
        self.frames_captured = 0
        self.started_at: float | None = None
        self._source_deadline: float | None = None  # the source's own, given back by stop()
        self.ended = threading.Event()  # the source has no more frames (or stopped)
        self._started = False

    def _make_buffers(self) -> None:
        # A file not played in real time loses nothing: the capture thread waits instead.
        self.lossless = not self.source.live and not getattr(self.source, "realtime", False)
        self._infer_slot = LatestSlot(lossless=self.lossless, carry_gaps=True)
        self._display_slot = LatestSlot(lossless=self.lossless) if self.display else None
        # Wait for the display consumer only while one is taking frames: nobody may be
        # (results() alone), and the capture thread must not block on it for ever.
        self._display_armed = self.lossless
        pending = self.max_pending if self.max_pending is not None else (256 if self.lossless else 4)
        self._results = BoundedBuffer(pending, lossless=self.lossless)

    # -- lifecycle
    def start(self) -> "StreamEngine":
        """Open the source (errors surface here) and start the threads."""
        if self._started:
            if self._stop.is_set():
                raise RuntimeError(f"{self.source.name}: this StreamEngine has run and stopped; make a new one")
            return self
        # This engine's max_seconds is the source's deadline while it runs; the source gets its
        # own back when the engine stops, or fails to start (it may be given to another engine).
        self._source_deadline = getattr(self.source, "deadline", None)
        if hasattr(self.source, "open_waiting"):  # a live source may wait to come up, max_seconds at most
            if self.max_seconds is not None:
                self.source.deadline = time.monotonic() + self.max_seconds
            try:
                self.source.open_waiting(self._stop)
            except BaseException:
                self.source.deadline = self._source_deadline
                raise
        else:
            self.source.open()
        self._make_buffers()
        self._started = True
        self.started_at = time.monotonic()
        if self.max_seconds is not None and hasattr(self.source, "deadline"):
            self.source.deadline = self.started_at + self.max_seconds  # a lost source stops trying then
        self._threads = [
            threading.Thread(target=self._capture_loop, name="videoact-capture", daemon=True),
            threading.Thread(target=self._inference_loop, name="videoact-inference", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and join the threads; True when all of them ended within ``timeout``."""
        self._stop.set()
        self._infer_slot.close()
        if self._display_slot is not None:
            self._display_slot.close()
        self._results.close()
        ok = True
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                ok = False
                self.log(f"{self.source.name}: {t.name} thread did not stop within {timeout:g} s "
                         "(blocked reading the source); leaving it behind")
        if self._started and hasattr(self.source, "deadline"):
            self.source.deadline = self._source_deadline
        return ok

    def __enter__(self) -> "StreamEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def error(self) -> BaseException | None:
        return self._errors[0] if self._errors else None

    def _raise_error(self) -> None:
        if self._errors:
            raise self._errors[0]

    # -- threads
    def _capture_loop(self) -> None:
        first: float | None = None
        previous: float | None = None
        try:
            for frame in self.source.frames(self._stop):
                if first is None:
                    first = frame.timestamp
                # The source's own interval: frames the inference thread skips are no gap.
                frame.source_gap = max(0.0, frame.timestamp - previous) if previous is not None else 0.0
                previous = frame.timestamp
                if self.max_seconds is not None and frame.timestamp - first >= self.max_seconds:
                    break
                self.frames_captured += 1
                if self._display_slot is not None:
                    self._put_display(frame)
                if not self._infer_slot.put(frame):
                    break
                self.classifier.dropped = self._infer_slot.dropped
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._errors.append(exc)
        finally:
            self.source.close()
            if hasattr(self.source, "deadline"):  # capture is over: the source's own deadline back
                self.source.deadline = self._source_deadline
            self.ended.set()
            self._infer_slot.close()
            if self._display_slot is not None:
                self._display_slot.close()

    def _put_display(self, frame: Frame) -> None:
        slot = self._display_slot
        assert slot is not None
        if not slot.lossless:
            slot.put(frame)
            return
        # Short waits, so that results() or stop() disarming the wait takes effect at once.
        deadline = time.monotonic() + self.display_wait
        while self._display_armed and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._display_armed = False  # not taken in time: the consumer is gone or idle
                self.log(f"{self.source.name}: the display took no frame for {self.display_wait:g} s; "
                         "overwriting display frames until it takes one")
                break
            if slot.wait_for_room(min(0.1, remaining), self._stop):
                break
        slot.put(frame, timeout=0)  # only this thread puts: the room found is still there

    def _inference_loop(self) -> None:
        warned = False
        try:
            while not self._stop.is_set():
                frame = self._infer_slot.get(timeout=0.5)
                if frame is None:
                    if self._infer_slot.closed:
                        break
                    continue
                self.classifier.dropped = self._infer_slot.dropped
                result = self.classifier.push(frame.image, frame.timestamp, capture_time=frame.capture_time,
                                              index=frame.index, source_gap=frame.source_gap,
                                              connection=frame.connection)
                if result is not None:
                    self.latest = result
                    # A display loop that shows engine.latest and never asks for results:
                    # keep the newest instead of waiting for ever. Before any consumer shows
                    # up (a caller still getting ready), wait as for one.
                    display_only = self._display_taken and not self._results_taken
                    self._results.put(result, self._stop, timeout=0.0 if display_only else None)
                    if display_only and self._results.dropped and not warned:
                        warned = True
                        self.log(f"{self.source.name}: no results taken (results() or poll()); keeping the "
                                 f"newest {self._results.maxlen}")
        except BaseException as exc:  # noqa: BLE001
            self._errors.append(exc)
            self._stop.set()
            self._infer_slot.close()
        finally:
            self._results.close()

    # -- consumers
    def results(self) -> Iterator[StreamResult]:
        """Predictions in order until the source ends or :meth:`stop`.

        Errors from the threads (an unreadable file, a lost stream that was given up,
        a backbone error) are raised here.
        """
        self._check_started()
        self._results_taken = True
        if not self._display_taken:
            self._display_armed = False  # iterating results() here means no display loop is
        while True:
            item = self._results.get(timeout=0.25)
            if item is not None:
                yield item
            elif self._results.finished:
                self._raise_error()
                return

    def poll(self) -> list[StreamResult]:
        """Results ready now, without waiting (for a display loop). An error from the
        threads is raised by the first call after the last result was returned and the
        inference thread finished."""
        self._check_started()
        self._results_taken = True
        out = []
        while True:
            item = self._results.get(timeout=0)
            if item is None:
                break
            out.append(item)
        # Results made before an error come first, as in results(): raised once the
        # inference thread has finished (it may still be on frames captured before it).
        if not out and self._results.finished:
            self._raise_error()
        return out

    def next_frame(self, timeout: float = 0.1) -> Frame | None:
        """The newest captured frame not yet shown (``display=True``), or None."""
        if self._display_slot is None:
            raise RuntimeError("StreamEngine(display=False) keeps no frames for display")
        self._check_started()
        self._display_taken = True
        self._display_armed = self._display_slot.lossless  # a consumer again: wait for it
        frame = self._display_slot.get(timeout=timeout)
        if frame is None and self._display_slot.finished:
            # Capture has ended; a display loop waits for the last results here (up to
            # ``timeout``) instead of spinning through next_frame() and poll() on a core.
            self._results.wait_for_item(timeout)
        return frame

    def _check_started(self) -> None:
        if not self._started:  # else results() would wait for ever on threads never started
            raise RuntimeError(f"{self.source.name}: the StreamEngine is not started: call start() or use "
                               "it in a with block")

    @property
    def finished(self) -> bool:
        """The source ended (or stop()) and every result was taken."""
        return self._results.finished

    @property
    def dropped(self) -> int:
        return self._infer_slot.dropped

    @property
    def display_dropped(self) -> int:
        return self._display_slot.dropped if self._display_slot is not None else 0

    @property
    def reconnects(self) -> int:
        return int(getattr(self.source, "reconnects", 0))

    def stats(self) -> dict[str, Any]:
        sc = self.classifier
        return {
            "source": self.source.name, "frames_captured": self.frames_captured,
            "dropped": self.dropped, "display_dropped": self.display_dropped,
            "features": sc.features_computed, "predictions": sc.predictions,
            "reconnects": self.reconnects, "resets": sc.resets, "results_dropped": self._results.dropped,
        }


def stream_predictions(source: FrameSource | str | int | os.PathLike,
                       classifier: "StreamClassifier | VideoClassifier", *, realtime: bool = False,
                       max_seconds: float | None = None, log: LogFn | None = None,
                       open_timeout: float = 10.0, **options: Any) -> Iterator[StreamResult]:
    """Iterate the predictions for a source; threads are stopped and joined on exit.

    ``source``: a camera index, URL, video file or :class:`FrameSource`. ``options``:
    the :class:`StreamEngine` source settings (``read_timeout``, ``reconnect``,
    ``give_up_after``, ``max_pending``) and the :class:`StreamClassifier` arguments
    (``feature_rate``, ``predict_rate``, ``ema``, ``threshold``, ``top_k``, ...).
    Breaking out of the loop shuts it down.
    """
    engine = StreamEngine(source, classifier, realtime=realtime, max_seconds=max_seconds, log=log,
                          open_timeout=open_timeout, **options)
    with engine:
        yield from engine.results()


# ========================================================================= benchmark


def _default_benchmark_classifier(device: str = "cpu") -> "VideoClassifier":
    """efficientnet_lite0 (offline ImageNet weights, 224 px) + a default-size BiLSTM.

    The temporal weights are untrained: speed does not depend on them.
    """
    from .backbones import create_backbone
    from .cnn_lstm import CNNLSTM
    from .device import resolve_device
    from .inference import VideoClassifier
    from .temporal import create_temporal_model

    # Building the models draws random initial weights: from a forked generator, so that the
    # caller's seeded random stream stays as it was (as VideoClassifier.from_checkpoint does).
    with torch.random.fork_rng(devices=[]):
        backbone = create_backbone("efficientnet_lite0", pretrained=True)
        torch.manual_seed(0)
        temporal = create_temporal_model("bilstm", backbone.feature_dim, 10)
    feature = {"backbone": backbone.name, "weights_id": backbone.weights_id, "pooling": backbone.pooling,
               "layer": backbone.layer, "image_size": backbone.input_size, "num_segments": 16}
    classes = [f"class_{i}" for i in range(10)]
    return VideoClassifier(CNNLSTM(backbone, temporal), classes, feature, resolve_device(device))


def benchmark_stream(checkpoint: str | os.PathLike | None = None, *, seconds: float = 10.0,
                     fps: float = 30.0, width: int = 640, height: int = 480,
                     feature_rate: float | None = None, predict_rate: float | None = None,
                     device: str = "cpu", video: str | os.PathLike | None = None,
                     work_dir: str | os.PathLike | None = None, threads: int | None = None) -> dict[str, Any]:
    """Measure the live engine on a real-time file source, with a display loop.

    A ``width x height`` video of ``seconds`` at ``fps`` is written (unless ``video`` is
    given) and played in real time through :class:`StreamEngine`; a display loop draws
    the overlay on every frame it gets (no window: the drawing and colour conversion
    are what a window would cost). ``checkpoint=None`` uses efficientnet_lite0 at its
    224 px input with the offline ImageNet weights and an untrained default BiLSTM.
    ``threads``: torch intra-op threads during the run (process-wide; restored after).

    Returns: ``prediction_rate`` (predictions per second of wall time, from the first
    one, when the ring is full, to the last), ``first_prediction_s``,
    ``display_rate`` (frames drawn per second), ``source_fps``, ``dropped``
    (frames the inference never looked at) and ``display_dropped``, ``frames_inferred``
    and ``frames_shown`` (the rest: each frame is either looked at or dropped),
    ``latency_p50_ms`` / ``latency_p95_ms`` / ``latency_max_ms`` (capture to result),
    ``cnn_ms_p50`` (one backbone pass), ``feature_rate``, ``predictions``, ``frames``.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _benchmark_stream(checkpoint, seconds, fps, width, height, feature_rate, predict_rate, device,
                                 video, work_dir)
    finally:
        torch.set_num_threads(previous_threads)


def _benchmark_stream(checkpoint, seconds, fps, width, height, feature_rate, predict_rate, device, video,
                      work_dir) -> dict[str, Any]:
    import tempfile

    from .overlay import AtomicVideoWriter, draw_stream_overlay

    if checkpoint is None:
        classifier = _default_benchmark_classifier(device)
    else:
        from .inference import VideoClassifier

        classifier = VideoClassifier.from_checkpoint(checkpoint, device=device)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        if video is None:
            video = Path(tmp) / "bench.mp4"
            with AtomicVideoWriter(video, fps) as writer:
                for image in _benchmark_frames(int(round(seconds * fps)), height, width):
                    writer.write(image)
        sc = StreamClassifier(classifier, feature_rate=feature_rate, predict_rate=predict_rate,
                              ema=0.5, threshold=0.0)
        # Warm-up outside the timing (first-call allocations).
        for _ in range(3):
            sc.classifier.frame_features(np.zeros((1, height, width, 3), np.uint8))
        engine = StreamEngine(FileSource(video, realtime=True), sc, display=True)
        latencies: list[float] = []
        cnn: list[float] = []
        done_at: list[float] = []
        shown = 0
        with engine:
            t_start = time.monotonic()
            while True:
                frame = engine.next_frame(timeout=0.2)
                for r in engine.poll():
                    latencies.append(r.latency)
                    cnn.append(r.cnn_seconds)
                    done_at.append(r.capture_time + r.latency)
                if frame is not None:
                    draw_stream_overlay(frame.image, engine.latest, display_fps=None, bgr_output=True)
                    shown += 1
                elif engine.finished:
                    break
            wall = time.monotonic() - t_start
            stats = engine.stats()
    lat = np.asarray(latencies) * 1000.0
    return {
        "source_fps": fps, "seconds": round(wall, 2), "frames": stats["frames_captured"],
        "feature_rate": sc.feature_rate, "predict_rate_setting": sc.predict_rate,
        "predictions": len(latencies),
        # Sustained: from the first prediction (once the ring is full) to the last.
        "prediction_rate": round((len(done_at) - 1) / (done_at[-1] - done_at[0]), 2) if len(done_at) > 1 else 0.0,
        "first_prediction_s": round(done_at[0] - t_start, 2) if done_at else None,
        "display_rate": round(shown / wall, 2) if wall > 0 else 0.0,
        "dropped": stats["dropped"], "display_dropped": stats["display_dropped"],
        "frames_inferred": sc.frames_pushed, "frames_shown": shown,
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
        "latency_max_ms": round(float(lat.max()), 1) if lat.size else None,
        "cnn_ms_p50": round(float(np.median(cnn)) * 1000.0, 1) if cnn else None,
        "image_size": int(classifier.backbone.input_size), "backbone": classifier.backbone.name,
        "torch_threads": torch.get_num_threads(),
    }


def _benchmark_frames(n: int, height: int, width: int) -> Iterator[np.ndarray]:
    """A moving textured scene (so the codec has real work), RGB ``[H, W, 3]`` per frame."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))[:height, :width]
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        frame = np.roll(base, i * 2, axis=1).copy()
        cx, cy = (i * 5) % width, height // 2
        frame[(xx - cx) ** 2 + (yy - cy) ** 2 < (height // 8) ** 2] = (255, 64, 32)
        yield frame
