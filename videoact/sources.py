"""Frame sources of the stream loop (:mod:`videoact.stream`): cameras, network streams,
video files and iterables of frames, each read frame by frame in the engine's capture thread.

* :class:`CameraSource` and :class:`URLSource` (OpenCV ``VideoCapture``) open with a time
  limit, reconnect with back-off when the source drops (each new connection counted in
  :attr:`Frame.connection`), and give up after ``give_up_after`` seconds without a frame.
  A URL whose stream has a length (a file on a web server) is read as a file.
* :class:`FileSource` reads a file with videoact's own decoder (decord, OpenCV fallback,
  verified frame counts): the file's timestamps, every frame, paced at its own rate with
  ``realtime=True``.
* :class:`IterableSource` takes frames from the caller's code (a generator, an array).

:func:`open_source` turns a spec (``"0"``, a URL, a path, an iterable) into one of these.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

log = logging.getLogger("videoact.stream")  # the stream loop's logger: one name to configure

LogFn = Callable[[str], None]

DEFAULT_LIVE_FPS = 30.0  # for recording when a camera does not say its rate


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class Frame:
    """One captured frame.

    ``image``: uint8 RGB ``[H, W, 3]``. ``timestamp``: seconds of source time (the
    file's own timestamps; for live sources seconds since the source was opened).
    ``index``: the source's frame counter (for files, the frame index in the file).
    ``capture_time``: ``time.monotonic()`` when the frame became available (for a file
    played in real time, the moment it was due). ``connection``: how many times the
    source had reconnected before this frame (frames of two connections are not one clip).
    ``source_gap``: seconds of source time since the frame before it, set by the stream
    engine (the longest such interval when frames in between were skipped).
    """

    image: np.ndarray
    timestamp: float
    index: int
    capture_time: float
    connection: int = 0
    source_gap: float = 0.0


class FrameSource:
    """Base class: ``open()``, then ``frames(stop)`` yields :class:`Frame` until the end.

    ``live``: frames arrive in real time whether or not they are taken (a camera): the
    engine keeps the newest and drops what it cannot keep up with. Otherwise (a file) the
    capture thread waits for the consumers and no frame is lost. For frames from your own
    code, :class:`IterableSource` does the wrapping."""

    name: str = "?"
    live: bool = False
    fps: float | None = None

    def open(self) -> None:
        raise NotImplementedError

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class IterableSource(FrameSource):
    """Frames from your own code: an iterable of uint8 RGB ``[H, W, 3]`` arrays or tensors,
    or of ``(frame, timestamp)`` pairs (seconds of source time, increasing).

    Each frame is copied as it is taken (the iterator may reuse its buffer). Frames
    without timestamps are timed at ``fps`` (default 30). ``live=True`` when the
    frames come in real time whatever happens (your own camera loop): the engine then drops
    frames it cannot keep up with instead of making the iterator wait (see :class:`FrameSource`).
    """

    def __init__(self, frames: Iterable[Any], fps: float | None = None, live: bool = False,
                 name: str = "<frames>") -> None:
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self._frames = frames
        self.fps = None if fps is None else float(fps)
        self.live = bool(live)
        self.name = name

    def open(self) -> None:
        pass

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        period = 1.0 / (self.fps or DEFAULT_LIVE_FPS)
        for index, item in enumerate(self._frames):
            if stop.is_set():
                return
            image, timestamp = item if isinstance(item, tuple) and len(item) == 2 else (item, index * period)
            # A copy: the engine reads the frame in another thread while the iterator goes on,
            # and a generator that refills one buffer (`buf[:] = f; yield buf`) overwrote it.
            image = image.cpu().numpy() if isinstance(image, torch.Tensor) else image
            try:
                image = np.array(image, copy=True)
            except (TypeError, ValueError):  # (frame, ts, extra), [frame, ts]: numpy's "inhomogeneous shape"
                got = (f"a {type(item).__name__} of {len(item)} items" if isinstance(item, (tuple, list))
                       else f"a {type(item).__name__}")
            else:
                got = f"{image.dtype} {tuple(image.shape)}"
                if image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8:
                    got = None
            if got is not None:
                raise SourceError(self.name, f"item {index}: expected a uint8 RGB frame [H, W, 3] or a "
                                             f"(frame, timestamp) tuple, got {got}")
            try:
                timestamp = float(timestamp)
            except (TypeError, ValueError):
                timestamp = math.nan
            if not math.isfinite(timestamp):
                raise SourceError(self.name, f"item {index}: timestamp {item[1]!r} is not a finite number of seconds")
            yield Frame(image, timestamp, index, time.monotonic())


class _Pacer:
    """Real-time pacing of a file's frames at their own timestamps, the first one now."""

    def __init__(self) -> None:
        self._start: float | None = None

    def wait(self, ts: float, stop: threading.Event) -> float | None:
        """Wait until frame ``ts`` is due; the monotonic time it was due (a late decode
        counts against latency, honestly), or ``None`` when ``stop`` was set."""
        now = time.monotonic()
        if self._start is None:
            self._start = now - ts
        due = self._start + ts
        if due > now and stop.wait(due - now):
            return None
        return due


def _rgb(bgr: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, or grey) as RGB ``[H, W, 3]``."""
    cv2 = _cv2()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)


class FileSource(FrameSource):
    """A video file (or JPEG frame folder) read with :func:`videoact.decode.open_video`.

    ``realtime=True`` paces frames at their own timestamps (like a camera would deliver
    them); otherwise frames come as fast as the consumers take them. ``open_timeout``:
    seconds allowed for opening and verifying the file (a decoder that does not return
    is left in a daemon thread and the source fails); ``None``: no limit.
    """

    live = False

    def __init__(self, path: str | os.PathLike, realtime: bool = False, open_timeout: float | None = None) -> None:
        from .decode import time_limit

        self.path = Path(path)
        self.name = str(path)
        self.realtime = bool(realtime)
        self.open_timeout = time_limit(open_timeout, "open_timeout")
        self._reader: Any = None

    def open(self) -> None:
        from .decode import VideoDecodeError, call_with_timeout, open_video

        def open_and_verify() -> Any:
            reader = open_video(self.path)
            len(reader)  # verify now: errors surface at open, not mid-stream
            return reader

        self.close()  # opened before: the earlier reader is not left open
        try:
            self._reader = call_with_timeout(open_and_verify, self.open_timeout, "opening")
            self.fps = float(self._reader.fps)
        except VideoDecodeError as exc:
            raise SourceError(self.name, exc.reason) from exc
        except TimeoutError as exc:
            raise SourceError(self.name, f"{exc}; the file is not readable in time") from None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        from .decode import VideoDecodeError

        if self._reader is None:
            self.open()
        pacer = _Pacer()
        try:
            for index, ts, image in self._reader.iter_frames():
                if stop.is_set():
                    return
                capture = pacer.wait(ts, stop) if self.realtime else time.monotonic()
                if capture is None:
                    return
                yield Frame(image, float(ts), int(index), capture)
        except VideoDecodeError as exc:
            # A frame of a frame folder: name it (img_00091.jpg), not only the folder.
            reason = exc.reason if exc.path == os.fspath(self.path) else f"{os.path.basename(exc.path)}: {exc.reason}"
            raise SourceError(self.name, reason) from exc

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class _CaptureSource(FrameSource):
    """A live ``cv2.VideoCapture`` source that reconnects with back-off when it drops.

    A URL whose stream has a known length (a video file served over HTTP: FFmpeg reports
    a frame count; live streams report none) is read as a file instead: source timestamps,
    every frame, and the end of the file ends it (no reconnect, no replay).

    Args:
        open_timeout: seconds to wait for the source to open (FFmpeg's own timeout for
            URLs, plus a guard thread, since not every backend honours it).
        read_timeout: seconds a read may block before FFmpeg gives up (URLs).
        reconnect: try again after the stream drops (else end).
        backoff: first wait before reconnecting; doubles up to ``max_backoff``.
        give_up_after: stop reconnecting after this many seconds without a frame
            (``None``: keep trying until stopped).
        log: where reconnect messages go (default: the ``videoact.stream`` logger).
        realtime: pace a stream of known length (a file over HTTP) at its own timestamps.
    """

    live = True

    def __init__(self, open_timeout: float = 10.0, read_timeout: float = 5.0, reconnect: bool = True,
                 backoff: float = 0.5, max_backoff: float = 8.0, give_up_after: float | None = None,
                 log: LogFn | None = None, realtime: bool = False) -> None:
        from .decode import positive_seconds

        self.realtime = bool(realtime)
        self.length: int | None = None  # frames, for a stream of known length (then not live)
        self.ended_short: tuple[int, int] | None = None  # (frames read, announced): a transfer cut off
        # Monotonic time after which a lost source is not reconnected any more (the
        # engine's max_seconds: a source that is down must not hold the run for ever).
        self.deadline: float | None = None
        self._stop_event: threading.Event | None = None  # set by frames(): an open gives up on it
        # Checked here, not where they are used (-1 gave up on every URL), as the command does.
        self.open_timeout = positive_seconds(open_timeout, "open_timeout")
        self.read_timeout = positive_seconds(read_timeout, "read_timeout")
        self.reconnect = bool(reconnect)
        self.backoff = positive_seconds(backoff, "backoff")
        self.max_backoff = positive_seconds(max_backoff, "max_backoff")
        self.give_up_after = positive_seconds(give_up_after, "give_up_after", none_is_no_limit=True)
        self._log = log or log_warning
        self._cap: Any = None
        self._t0: float | None = None
        self._count = 0
        self.reconnects = 0
        # Kept across _reconnect() calls and reset only by a frame: a source that opens
        # but never delivers must still back off, count attempts and give up.
        self._last_frame: float | None = None  # monotonic time of the last frame (or first open)
        self._delay = self.backoff
        self._attempt = 0
        self._lost_reason = "read failed"

    # -- what subclasses provide
    def _create(self) -> Any:
        raise NotImplementedError

    def _describe_failure(self) -> str:
        return "cannot be opened"

    # -- opening with a guard
    def _open_capture(self) -> Any:
        """Open in a helper thread; give up after ``open_timeout`` (+ margin)."""
        box: dict[str, Any] = {}
        abandoned = threading.Event()

        def target() -> None:
            try:
                cap = self._create()
            except Exception as exc:  # cv2.error and friends
                box["error"] = exc
                return
            if abandoned.is_set():  # too late: nobody will use it
                cap.release()
                return
            box["cap"] = cap

        helper = threading.Thread(target=target, name=f"open {self.name}", daemon=True)
        helper.start()
        limit = time.monotonic() + self.open_timeout + 2.0
        stop = self._stop_event
        while helper.is_alive() and time.monotonic() < limit:
            helper.join(0.1)
            if stop is not None and stop.is_set():  # stop() (Ctrl-C) does not wait for a hung open
                abandoned.set()
                raise SourceError(self.name, "stopped while opening")
        if helper.is_alive():
            abandoned.set()
            raise SourceError(self.name, f"no answer within {self.open_timeout:g} s (open timed out)")
        if "error" in box:
            raise SourceError(self.name, f"{self._describe_failure()} ({box['error']})")
        cap = box["cap"]
        if not cap.isOpened():
            cap.release()
            raise SourceError(self.name, self._describe_failure())
        return cap

    def open(self) -> None:
        self.close()  # opened before (by the caller, then by an engine): one device handle, not two
        self._cap = self._open_capture()
        fps = self._cap.get(_cv2().CAP_PROP_FPS)
        self.fps = float(fps) if fps and math.isfinite(fps) and 1.0 <= fps <= 240.0 else None
        if self._t0 is None and self._known_length():  # at the first open only
            # A file over HTTP (FFmpeg knows its length; a live stream reports none): read it
            # as a file. The count only tells "file"; the end is where reads end. 0: a file
            # whose container records no length (a browser's WebM).
            count = self._cap.get(_cv2().CAP_PROP_FRAME_COUNT)
            self.length = int(count) if math.isfinite(count) and count >= 1 else 0
            self.live = False
        if self._t0 is None:
            self._t0 = time.monotonic()
        if self._last_frame is None:
            self._last_frame = self._t0

    def open_waiting(self, stop: threading.Event) -> None:
        """The first :meth:`open`. With ``reconnect`` and ``give_up_after`` set, a source
        that is not up yet (a camera or an RTSP server still starting) is tried again with
        the back-off for up to ``give_up_after`` seconds (or until :attr:`deadline`, if
        sooner); otherwise its first error is the answer (a typo in a URL is said at once)."""
        self._stop_event = stop
        if not self.reconnect or self.give_up_after is None:
            self.open()
            return
        started, delay = time.monotonic(), self.backoff
        # Until give_up_after has passed, or the deadline (the engine's max_seconds) if sooner.
        end = started + self.give_up_after if self.deadline is None else min(started + self.give_up_after,
                                                                             self.deadline)
        while True:
            try:
                self._open_within(end - time.monotonic())
                return
            except SourceError as exc:
                now = time.monotonic()
                if stop.is_set() or now >= end:
                    raise SourceError(self.name, f"{exc.reason}; not up after {now - started:.1f} s") from None
                wait = min(delay, end - now)
                self._log(f"{self.name}: {exc.reason}; trying again in {wait:.1f} s "
                          f"(for up to {round(end - started, 1):g} s)")
                if stop.wait(wait):
                    raise SourceError(self.name, "stopped while opening") from None
                delay = min(self.max_backoff, delay * 2)

    def _open_within(self, seconds: float | None) -> None:
        """:meth:`open`, its timeout cut to ``seconds`` (at least 1 s): the open that a
        give-up time allows ends by then, not a whole ``open_timeout`` later."""
        saved = self.open_timeout
        if seconds is not None:
            self.open_timeout = min(saved, max(1.0, seconds))
        try:
            self.open()
        finally:
            self.open_timeout = saved

    def _known_length(self) -> bool:
        return False  # cameras are live

    def _read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok and frame is not None and frame.size else None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        self._stop_event = stop
        if self._cap is None:
            self.open()
        if self.length is not None:
            yield from self._file_frames(stop)
            return
        while not stop.is_set():
            bgr = self._read()
            if bgr is not None:
                now = time.monotonic()
                assert self._t0 is not None
                if self._attempt:  # back after a loss: only a frame counts as reconnected
                    self.reconnects += 1
                    self._log(f"{self.name}: reconnected after {now - (self._last_frame or now):.1f} s "
                              f"({self._attempt} attempt{'s' if self._attempt > 1 else ''})")
                self._last_frame = now
                self._delay = self.backoff
                self._attempt = 0
                yield Frame(_rgb(bgr), now - self._t0, self._count, now, self.reconnects)
                self._count += 1
                continue
            if not self.reconnect:
                self._log(f"{self.name}: stream ended (read failed)")
                return
            self._lost_reason = "opened but no frame could be read" if self._attempt else "read failed"
            if not self._reconnect(stop):
                return

    def _file_frames(self, stop: threading.Event) -> Iterator[Frame]:
        """A stream of known length, read as :class:`FileSource` reads a file."""
        cv2 = _cv2()
        pacer = _Pacer()
        last = step = -math.inf  # the last frame's time, and the interval before it
        while not stop.is_set():
            bgr = self._read()
            if bgr is None:
                if self._count == 0:  # e.g. a server that ignores range requests: not an empty video
                    announced = f"announced {self.length} frames" if self.length else "opened"
                    raise SourceError(self.name, f"the stream {announced} but none could be read")
                if self._cut_off(last, step):
                    self.ended_short = (self._count, self.length)
                    self._log(f"{self.name}: reading ended after {self._count} of the {self.length} frames "
                              "the stream announced")
                return
            ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            if math.isfinite(ms) and ms / 1000.0 > last:
                ts = ms / 1000.0
            else:  # no usable time: one frame interval on (timestamps must increase)
                ts = 0.0 if last == -math.inf else last + 1.0 / (self.fps or DEFAULT_LIVE_FPS)
            step, last = ts - last, ts
            capture = pacer.wait(ts, stop) if self.realtime else time.monotonic()
            if capture is None:
                return
            yield Frame(_rgb(bgr), ts, self._count, capture)
            self._count += 1

    def _cut_off(self, last: float, step: float) -> bool:
        """Whether a file's reading that ended after its frame at ``last`` s (``step`` s after
        the one before) ended clearly short of the end FFmpeg announced: a dropped
        connection looks like the end. The announced count is an estimate where the
        container has none (duration times the nominal rate: a variable-rate MKV announced
        300 frames for its 35), so the time read is checked against the duration too,
        with the file's own last interval as slack."""
        if not self.length:  # nothing announced: nothing to fall short of
            return False
        if self._count >= self.length - max(2, self.length // 50):  # a frame or two off is no loss
            return False
        if not self.fps:
            return True
        duration = self.length / self.fps  # how OpenCV estimates the count, undone
        slack = max(2.0 / self.fps, 2.0 * step if math.isfinite(step) else 0.0, 0.02 * duration)
        return last < duration - slack

    def _reconnect(self, stop: threading.Event) -> bool:
        """Re-open with exponential back-off; False when stopped, :class:`SourceError` when given up.

        The back-off, the attempt count and the time of the last frame live on the source,
        so a source that opens but yields no frame keeps backing off and gives up after
        ``give_up_after`` seconds without a frame, like one that does not open at all.
        """
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        while not stop.is_set():
            now = time.monotonic()
            last = self._last_frame if self._last_frame is not None else now
            waited = now - last
            if self.deadline is not None and now >= self.deadline:
                self._log(f"{self.name}: the time limit passed while the source was lost ({self._lost_reason}); "
                          "not reconnecting")
                return False
            if self.give_up_after is not None and waited >= self.give_up_after:
                self._log(f"{self.name}: giving up after {waited:.1f} s without frames ({self._lost_reason})")
                raise SourceError(self.name, f"lost and not back after {waited:.1f} s ({self._lost_reason})")
            delay = self._delay
            if self.give_up_after is not None:  # one last try at the deadline, not a full back-off past it
                delay = max(0.0, min(delay, self.give_up_after - waited))
            if self.deadline is not None:
                delay = max(0.0, min(delay, self.deadline - now))
            self._attempt += 1
            self._delay = min(self.max_backoff, self._delay * 2)
            self._log(f"{self.name}: stream lost ({self._lost_reason}); reconnecting in {delay:.1f} s "
                      f"(attempt {self._attempt})")
            if stop.wait(delay):
                return False
            try:
                left = None if self.give_up_after is None else self.give_up_after - (time.monotonic() - last)
                self._open_within(left)
            except SourceError as exc:
                self._lost_reason = exc.reason
                continue
            return True  # opened; frames() counts the reconnect when a frame comes
        return False

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CameraSource(_CaptureSource):
    """A local camera by index (``cv2.VideoCapture(index)``)."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = int(index)
        self.name = f"camera {self.index}"

    def _create(self) -> Any:
        cv2 = _cv2()
        cap = cv2.VideoCapture(self.index)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # where supported: less driver-side lag
        return cap

    def _describe_failure(self) -> str:
        return "cannot open the camera (no such device, busy, or no permission)"


class URLSource(_CaptureSource):
    """An RTSP/HTTP(S) stream (MJPEG, H.264, ...) opened by OpenCV's FFmpeg backend."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = str(url)
        self.name = self.url

    def _create(self) -> Any:
        cv2 = _cv2()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _describe_failure(self) -> str:
        return "cannot open the stream (refused, not found, or not a video OpenCV can read)"

    def _known_length(self) -> bool:
        from .decode import VIDEO_EXTENSIONS

        count = self._cap.get(_cv2().CAP_PROP_FRAME_COUNT)  # live MJPEG: negative; live RTSP, HLS: 0
        if math.isfinite(count) and count >= 1:
            return True
        # A file whose container records no length (a browser's MediaRecorder WebM: a count
        # of -1.4e17) was taken for a live camera and replayed for ever. Over HTTP(S), a URL
        # named as a video file whose server announces its size, not as a multipart stream
        # (an MJPEG camera's, whatever its name: cameras serve "videostream.asf" too), is a file.
        path = urllib.parse.urlsplit(self.url).path.lower()
        return (self.url.lower().startswith(("http://", "https://")) and path.endswith(VIDEO_EXTENSIONS)
                and not path.endswith(_LIVE_EXTENSIONS) and _served_as_a_file(self.url, self.open_timeout))


# Video file names that live HTTP streams use too (MPEG-TS, HTTP-FLV): not taken for files.
_LIVE_EXTENSIONS = (".ts", ".mts", ".m2ts", ".flv", ".f4v")


def _served_as_a_file(url: str, timeout: float) -> bool:
    """Whether an HTTP(S) server answers ``url`` with a size (``Content-Length``) and not a
    multipart stream: a file, not a live stream. Headers only (HEAD, or a GET closed after
    its headers where HEAD is refused); any failure (credentials in the URL, a timeout)
    says no, leaving the stream live as before."""
    import urllib.error
    import urllib.request

    for method in ("HEAD", "GET"):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as answer:
                kind = answer.headers.get("Content-Type", "").lower()
                size = answer.headers.get("Content-Length", "")
                return size.isdigit() and int(size) > 0 and not kind.startswith("multipart/")
        except urllib.error.HTTPError as exc:
            if method == "GET" or exc.code not in (405, 501):  # HEAD refused: ask with GET
                return False
        except (OSError, ValueError):  # unreachable, timed out, a URL urllib cannot take
            return False
    return False


URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def open_source(spec: str | int | os.PathLike | FrameSource | Iterable[Any], *, realtime: bool = False,
                open_timeout: float = 10.0, read_timeout: float = 5.0, reconnect: bool = True,
                give_up_after: float | None = None, log: LogFn | None = None,
                file_timeout: float | None = 300.0) -> FrameSource:
    """A :class:`FrameSource` for a camera index (``0``, ``"0"`` or ``"/dev/video0"``), a URL, a
    video file, or an iterable of frames (:class:`IterableSource`, e.g. a generator or a
    ``[T, H, W, 3]`` array).

    Nothing is opened yet (:meth:`FrameSource.open` does it). ``realtime`` applies to
    files (and to a URL of a file, which is read as a file); ``file_timeout`` is the time allowed to open and verify a file (a file
    only OpenCV reads is scanned to its end, so it is longer than ``open_timeout``).
    Raises :class:`SourceError` for a spec that is none of these, ValueError for a time
    that is no number of seconds.
    """
    from .decode import time_limit

    file_timeout = time_limit(file_timeout, "file_timeout")  # named as the caller gave it
    if isinstance(spec, FrameSource):
        return spec
    if not isinstance(spec, (str, int, os.PathLike)) or isinstance(spec, bool):
        if isinstance(spec, (Iterable, np.ndarray, torch.Tensor)) and not isinstance(spec, (bytes, bytearray)):
            return IterableSource(spec)
        raise SourceError(type(spec).__name__, "not a camera index, a URL, a video file, a FrameSource or an "
                          "iterable of frames (for a cv2.VideoCapture, pass its camera index or URL)")
    live = dict(open_timeout=open_timeout, read_timeout=read_timeout, reconnect=reconnect,
                give_up_after=give_up_after, log=log)
    if isinstance(spec, int):
        return CameraSource(spec, **live)
    text = os.fspath(spec)
    device = re.fullmatch(r"/dev/video(\d+)", text.strip())
    if device:  # Linux names cameras so; OpenCV opens them by that number
        return CameraSource(int(device.group(1)), **live)
    if isinstance(spec, os.PathLike):  # a Path names a video file or frame folder, never a camera or a URL
        if not os.path.exists(text):
            raise SourceError(text, "no such video file")
        return FileSource(text, realtime=realtime, open_timeout=file_timeout)
    if text.strip().isascii() and text.strip().isdigit():  # not "²", which int() refuses
        from .decode import FRAME_NAME

        frames = os.path.isfile(os.path.join(text, FRAME_NAME.format(1)))
        if os.path.isfile(text) or frames:  # a video, or a frame folder: both are read as files
            what = "frame folder" if frames else "file"
            (log or log_warning)(f"{text!r} is taken as camera {int(text)}; to read the {what} of that name in the "
                                 f"working directory, give ./{text.strip()}")
        return CameraSource(int(text), **live)
    if text.lower().startswith(URL_SCHEMES):
        return URLSource(text, realtime=realtime, **live)
    if not os.path.exists(text):
        raise SourceError(text, "not a camera index, a URL (rtsp://, http://, ...) or an existing video file")
    return FileSource(text, realtime=realtime, open_timeout=file_timeout)


def log_warning(message: str) -> None:
    log.warning(message)


def _cv2() -> Any:
    import cv2

    return cv2
