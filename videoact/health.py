"""Video health check: which files of a collection videoact can read, and why not.

``check_videos(SRC)`` scans a folder (recursively) or an annotation list and sorts each
file into one of four statuses:

* ``readable``   - the preferred decoder (decord) reads it;
* ``fallback``   - readable, but only with the fallback decoder (OpenCV); ``reason``
  says why decord failed;
* ``partial``    - fewer frames decode than the container claims (``frames`` versus
  ``claimed``): videoact uses the frames that decode, but the file is damaged;
* ``unreadable`` - nothing usable; ``reason`` says why (empty, not a video, no decoder
  for the codec, permission denied, timed out, decoder crashed, ...).

Each file is checked the way the other commands read it: :func:`videoact.decode.open_video`
(decord, OpenCV fallback), its verified frame count, then the first, middle and last
frame (``deep=True`` decodes every frame instead, finding damage in the middle too).

Files are checked in worker processes that the parent can kill: a file whose decoder
does not return within ``timeout`` seconds (e.g. a valid header followed by gigabytes
of garbage that the demuxer scans) or that crashes the decoder (a segfault in C code)
costs one worker, which is replaced, and is reported as unreadable with that reason.
The limit is on time without progress: a deep check reports each few frames decoded, so a
long healthy file is not taken for a hung decoder.
Workers are also replaced every ``max_files_per_worker`` files, so memory stays bounded
however many files there are; the report records the workers' peak memory.

The worker pool, :func:`run_killable`, is shared with ``videoact decode-frames``.

The result is a :class:`HealthReport`: JSON (:meth:`HealthReport.to_dict`), a readable
summary (:meth:`HealthReport.summary`) and a quarantine list
(:func:`write_quarantine`), one path per line, that ``videoact extract --exclude`` and
the training config's ``data.exclude`` skip (:func:`read_exclude_list`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing as mp
import os
import signal
import stat
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .notices import VideoactWarning
from .spawn import exit_without_teardown, main_script_hidden, signal_name

__all__ = [
    "STATUSES",
    "FileHealth",
    "HealthReport",
    "CheckInterrupted",
    "check_file",
    "check_videos",
    "gather_sources",
    "write_quarantine",
    "read_exclude_list",
    "exclude_paths",
    "write_report",
    "run_killable",
    "WorkerRun",
]

READABLE, FALLBACK, PARTIAL, UNREADABLE = "readable", "fallback", "partial", "unreadable"
STATUSES = (READABLE, FALLBACK, PARTIAL, UNREADABLE)
STATUS_TEXT = {
    READABLE: "readable",
    FALLBACK: "readable with the fallback decoder",
    PARTIAL: "partially readable",
    UNREADABLE: "unreadable",
}
# Frame counts that are not a claim at all (OpenCV reports e.g. -1.4e17 for a WebM
# without a duration).
_MAX_PLAUSIBLE_FRAMES = 10**8
# Seconds a new worker process may take to start (spawn, import decoders and torch) and
# take its first file; on a loaded machine this can be many seconds.
STARTUP_TIMEOUT = 120.0


@dataclass
class FileHealth:
    """The outcome for one file.

    ``frames``: frames verified to decode (with ``deep``: frames actually decoded);
    ``claimed``: frames the container claims, from decord's index (``claimed_by ==
    "decord"``) or OpenCV's estimate from duration and rate (``"opencv"``), ``None`` when
    the container gives no usable number.
    """

    path: str
    status: str
    reason: str | None = None
    backend: str | None = None
    frames: int | None = None
    claimed: int | None = None
    claimed_by: str | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    size_bytes: int | None = None
    seconds: float = 0.0

    @property
    def usable(self) -> bool:
        """videoact commands can read frames from it (all statuses but ``unreadable``)."""
        return self.status != UNREADABLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CheckInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`check_videos`: a KeyboardInterrupt that carries the report of
    the files checked before it (``report.unchecked``: the rest), so that a long check's
    findings are not lost."""

    def __init__(self, report: "HealthReport") -> None:
        super().__init__(f"interrupted after {len(report.files)} of "
                         f"{len(report.files) + len(report.unchecked)} files")
        self.report = report

    def __reduce__(self) -> tuple:  # copy and pickle rebuild it from its report, not its message
        return type(self), (self.report,)


@dataclass
class HealthReport:
    """Every file's :class:`FileHealth` plus how the check ran."""

    source: str
    files: list[FileHealth]
    problems: list[str] = field(default_factory=list)  # annotation-list problems (bad lines)
    workers: int = 0
    timeout: float | None = None
    deep: bool = False
    seconds: float = 0.0
    worker_restarts: int = 0  # workers killed (time limit) or lost (crash) and replaced
    max_worker_rss_mb: float = 0.0  # peak resident memory of any worker process
    interrupted: bool = False  # by a Ctrl-C (maybe after the last file: then nothing is unchecked)
    unchecked: list[str] = field(default_factory=list)  # not reached before the Ctrl-C

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for f in self.files:
            out[f.status] += 1
        return out

    def with_status(self, *statuses: str) -> list[FileHealth]:
        return [f for f in self.files if f.status in statuses]

    @property
    def ok(self) -> bool:
        """No file is unreadable (and the check was not interrupted)."""
        return not self.with_status(UNREADABLE) and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "counts": self.counts(),
            "settings": {"workers": self.workers, "timeout": self.timeout, "deep": self.deep},
            "seconds": round(self.seconds, 3),
            "worker_restarts": self.worker_restarts,
            "max_worker_rss_mb": round(self.max_worker_rss_mb, 1),
            "problems": list(self.problems),
            "files": [f.to_dict() for f in self.files],
            "interrupted": self.interrupted,
            "unchecked": list(self.unchecked),
        }

    def summary(self, limit: int | None = 50, json_path: str | os.PathLike | None = None) -> str:
        """A readable report: counts, then every file that is not plainly readable (the
        first ``limit``; the rest are said to be in ``json_path``, the JSON report written
        of this check, or else to be listed by a rerun with ``--json``)."""
        counts = self.counts()
        how = f"{self.workers} worker processes" if self.workers else "in this process"
        limit_text = f", {self.timeout:g} s per file" if self.timeout else ""
        lines = [f"checked {len(self.files)} file{'' if len(self.files) == 1 else 's'} from {self.source} in {self.seconds:.1f} s "
                 f"({how}{limit_text}{', every frame decoded' if self.deep else ''})"]
        if self.interrupted:
            lines[0] += (f"; interrupted: {len(self.unchecked)} of {len(self.files) + len(self.unchecked)} "
                         "files not checked")
        width = max(len(t) for t in STATUS_TEXT.values())
        for status in STATUSES:
            lines.append(f"  {STATUS_TEXT[status]:<{width}}  {counts[status]}")
        bad = [f for f in self.files if f.status != READABLE]
        shown = bad if limit is None else bad[:limit]
        if shown:
            lines.append("")
        for f in shown:
            if f.status in (PARTIAL, FALLBACK):
                detail = f"{f.reason} ({f.frames} frames read with {f.backend})"
            else:
                detail = f.reason or ""
            lines.append(f"{f.status:<10}  {f.path}: {detail}")
        if len(shown) < len(bad):
            where = f"see {os.fspath(json_path)}" if json_path else "rerun with --json FILE to list them"
            lines.append(f"... and {len(bad) - len(shown)} more ({where})")
        for p in self.problems:
            lines.append(f"annotation problem: {p}")
        return "\n".join(lines)


# ---------------------------------------------------------------- one file


def _precheck(path: str) -> str | None:
    """Reasons found without a decoder (cheap, and clearer than a decoder's message)."""
    if os.path.islink(path) and not os.path.exists(path):
        return f"broken symbolic link (to {os.readlink(path)})"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot stat the file ({exc.strerror or exc})"
    if stat.S_ISDIR(st.st_mode):
        return None  # a JPEG frame folder: open_video reads it
    if stat.S_ISFIFO(st.st_mode):
        return "not a regular file (a named pipe: reading it could block forever)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device or socket)"
    if st.st_size == 0:
        return "file is empty (0 bytes)"
    try:  # os.access says yes to root; an actual read is the real test
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read the file ({exc.strerror or exc})"
    return None


# A deep check beats every this many frames: a few beats a second even for 4K at one
# thread, without a message to the parent for each small frame.
_BEAT_FRAMES = 4

_DURATION_FROM_ZERO = frozenset({".mkv", ".webm", ".mka", ".mk3d"})


def _claimed_frames(reader: Any, path: str) -> tuple[int | None, str | None]:
    """Frames the container claims: decord's frame index if decord reads the file, else
    OpenCV's count (a header's, or duration x rate: for Matroska/WebM less a late first
    timestamp); OpenCV's when it says clearly more than decord's index. Why: decord indexes
    the packets that are there, so a file cut short (an AVI whose second half is missing)
    looked whole (104 of 104 frames), while its header, which OpenCV reads, still says 200."""
    inner = getattr(reader, "_inner", reader)  # _AutoReader wraps the reader it uses
    if getattr(inner, "backend", None) == "frames":
        return None, None
    vr = getattr(inner, "_vr", None) if getattr(inner, "backend", None) == "decord" else None
    indexed = None
    if vr is not None:
        try:
            indexed = int(len(vr))
        except Exception:
            pass
    import cv2

    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    start = 0.0
    try:
        value = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else float("nan")
        # Matroska/WebM have no frame count: the estimate is the duration x rate, and that
        # duration runs from time 0, so a file whose timestamps start late (a cut with kept
        # timestamps, a recording of a stream) claims its start's frames too. The first
        # frame's PTS, in frames, is that start (OpenCV 5.0 gives it; 4.10 does not: no
        # correction). Other containers' counts (MP4, AVI headers; MPEG-PS durations, which
        # exclude the start) are left as they are.
        if (Path(path).suffix.lower() in _DURATION_FROM_ZERO and hasattr(cv2, "CAP_PROP_PTS")
                and math.isfinite(value) and value > 0 and cap.grab()):
            start = cap.get(cv2.CAP_PROP_PTS)
    finally:
        cap.release()
    if math.isfinite(start) and 0 < start < value:
        value -= start
    estimate = int(round(value)) if math.isfinite(value) and 0 < value < _MAX_PLAUSIBLE_FRAMES else None
    if indexed is not None and (estimate is None or not _fewer_than_claimed(indexed, estimate, "opencv")):
        return indexed, "decord"
    return (estimate, "opencv") if estimate is not None else (None, None)


def _fewer_than_claimed(frames: int, claimed: int | None, claimed_by: str | None) -> bool:
    """True when fewer frames decode than claimed. OpenCV's count is an estimate
    (duration x rate, often one frame high for Matroska): allow 1 frame + 1% there."""
    if claimed is None:
        return False
    slack = 0 if claimed_by == "decord" else 1 + claimed // 100
    return frames < claimed - slack


def _fallback_text(reason: str) -> str:
    """decode's "not a readable video (decord: X)" -> "decord cannot read it: X"."""
    if reason.startswith(("decord returns the wrong frames", "decord is not known")):  # says it already
        return reason
    prefix = "not a readable video (decord: "
    if reason.startswith(prefix) and reason.endswith(")"):
        reason = reason[len(prefix):-1]
    return f"decord cannot read it: {reason}"


def check_file(path: str | os.PathLike, *, deep: bool = False, backend: str = "auto",
               beat: Callable[[], None] | None = None) -> FileHealth:
    """Check one file in this process (no time limit: :func:`check_videos` adds one).

    ``beat``: called as the check makes progress (the file opened, the sample frames
    read, every few frames of a deep check, each frame a reader decodes to count them
    where the container does not say: :func:`~videoact.decode.heartbeat`), so that a time
    limit counts the time without progress (:func:`run_killable`'s beat), not the time a
    long file takes.
    """
    from .decode import heartbeat

    with heartbeat(beat):
        return _check_file(path, deep=deep, backend=backend, beat=beat)


def _check_file(path: str | os.PathLike, *, deep: bool, backend: str,
                beat: Callable[[], None] | None) -> FileHealth:
    from .decode import VideoDecodeError, open_video

    path = os.fspath(path)
    started = time.monotonic()
    progress = beat or (lambda: None)
    result = FileHealth(path=path, status=UNREADABLE)
    try:
        result.size_bytes = os.stat(path).st_size if os.path.isfile(path) else None
    except OSError:
        pass
    reason = _precheck(path)
    if reason is not None:
        result.reason = reason
        result.seconds = time.monotonic() - started
        return result
    reader = None
    try:
        reader = open_video(path, backend=backend, num_threads=1)
        progress()
        # The frames extraction and inference would read first: start, middle, end.
        first = reader.backend
        try:
            n = len(reader)
            reader.get(sorted({0, n // 2, n - 1}))
        except VideoDecodeError:
            # decord opened it but failed reading; the OpenCV fallback may decode fewer
            # frames than decord counted. Sample again within what OpenCV decodes.
            if reader.backend == first:
                raise
            n = len(reader)
            reader.get(sorted({0, n // 2, n - 1}))
        progress()
        decoded, deep_error = len(reader), None
        if deep:
            decoded = 0
            try:
                for _ in reader.iter_frames():
                    decoded += 1
                    if decoded % _BEAT_FRAMES == 0:  # a long file is not a hung decoder
                        progress()
            except VideoDecodeError as exc:
                deep_error = exc.reason
        progress()
        result.backend = reader.backend
        result.frames = decoded
        result.fps = float(reader.fps)
        result.width, result.height = int(reader.width), int(reader.height)
        ts = reader.timestamps()
        if len(ts):
            result.duration = float(ts[-1]) + 1.0 / float(reader.fps)
        result.claimed, result.claimed_by = _claimed_frames(reader, path)
        if deep_error is not None:
            result.status = PARTIAL if decoded else UNREADABLE
            result.reason = f"decoding stopped after {decoded} frames: {deep_error}"
            if result.claimed is None or result.claimed <= decoded:
                result.claimed, result.claimed_by = len(reader), "verified count"
        elif _fewer_than_claimed(decoded, result.claimed, result.claimed_by):
            result.status = PARTIAL
            result.reason = f"{decoded} of {result.claimed} claimed frames decode"
            if reader.fallback_reason:
                result.reason += f"; {_fallback_text(reader.fallback_reason)}"
        elif reader.fallback_reason:
            result.status = FALLBACK
            result.reason = _fallback_text(reader.fallback_reason)
        else:
            result.status = READABLE
    except VideoDecodeError as exc:
        result.reason = exc.reason
    except MemoryError:
        result.reason = "out of memory while decoding"
    except Exception as exc:  # a decoder's own exception types: report, never stop the scan
        result.reason = f"{type(exc).__name__}: {exc}"
    finally:
        if reader is not None:
            try:
                reader.close()
            except Exception:
                pass
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------- killable worker processes


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _die_with(parent: int) -> None:
    """End this worker at once if ``parent`` is no longer its parent (it died while the
    worker started), and on Linux have the kernel kill it when ``parent`` dies, kill -9
    included: a worker whose decoder hangs in C code never reads its closed pipe, and went
    on using a core for as long as the decoder ran (half an hour on the test's hanging file)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl in this C library: the pipe still ends idle workers
            pass
    if os.getppid() != parent:  # it died before (or while) the call
        os._exit(1)


def _worker_main(conn: Any, fn: Callable[..., Any], options: dict[str, Any], preload: tuple[str, ...],
                 parent: int) -> None:
    """A worker: receive ``(index, item)``; send ``("begin", index)``, any number of
    ``("beat", index)`` (progress), then ``("done", index, fn(item, beat, **options), peak RSS MB)``."""
    import importlib

    _die_with(parent)
    # Ctrl-C is the parent's to handle, and so are SIGTERM and SIGHUP, which `timeout`,
    # SLURM and a closed terminal send the whole process group: a worker they ended would
    # report its (good) file as a decoder crash. The parent kills its workers when it stops,
    # and on Linux the kernel does when it dies (_die_with).
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
    # Import heavy modules before the first item, so that its time limit is not spent
    # on start-up.
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # an optional decoder not installed (or broken): an item that needs it says so
            pass
    from .decode import limit_threads

    limit_threads(1)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            exit_without_teardown()
        if task is None:
            exit_without_teardown()  # told to stop: everything is sent (see its docstring: 1.3 s less)
        index, item = task
        conn.send(("begin", index))
        result = fn(item, lambda: conn.send(("beat", index)), **options)
        conn.send(("done", index, result, _peak_rss_mb()))


class _Worker:
    def __init__(self, ctx: Any, fn: Callable[..., Any], options: dict[str, Any], preload: tuple[str, ...]) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, options, preload, os.getpid()), daemon=True,
                                name="videoact-worker")
        self.proc.start()
        child.close()
        self.task: tuple[int, Any] | None = None
        self.given = 0.0  # when the task was sent
        self.started: float | None = None  # when the worker last reported (the clock starts)
        self.items = 0

    def give(self, task: tuple[int, Any]) -> None:
        self.task, self.given, self.started = task, time.monotonic(), None
        self.conn.send(task)

    def deadline(self, timeout: float) -> float:
        if self.started is None:  # still starting up (spawn + imports): a generous limit
            return self.given + max(STARTUP_TIMEOUT, timeout)
        return self.started + timeout

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2)
        self.conn.close()


def _death_reason(proc: Any) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the decoder crashed: its worker process died with {signal_name(-code)}{hint}"
    return f"the decoder crashed: its worker process exited with status {code}"


@dataclass
class WorkerRun:
    """What :func:`run_killable` returns: per item, ``results[i]`` (``None`` when the item
    failed) or ``failures[i]`` (why: time limit or crash)."""

    results: list[Any]
    failures: list[str | None]
    restarts: int = 0  # workers killed (time limit) or lost (crash) and replaced
    max_rss_mb: float = 0.0  # peak resident memory of any worker


def run_killable(
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    workers: int,
    timeout: float | None = None,
    options: dict[str, Any] | None = None,
    preload: Sequence[str] = ("torch", "videoact.decode", "decord"),
    max_items_per_worker: int = 200,
    on_done: Callable[[int, Any, str | None, float], None] | None = None,
) -> WorkerRun:
    """Run ``fn(item, beat, **options)`` for each item in worker processes that can be killed.

    ``fn`` must be a module-level function (workers are spawned), of a module or of the
    script run (which must then start its work under ``if __name__ == "__main__":``, as
    for any spawned process). It may call ``beat()``
    to report progress: ``timeout`` is the number of seconds a worker may go without
    finishing its item or calling ``beat`` (``None``: no limit). A worker past its limit
    is killed; a worker that dies (a crash in C code, the out-of-memory killer) is
    detected; either way the item fails with the reason and a fresh worker takes the
    next item. Workers are replaced every ``max_items_per_worker`` items, which bounds
    whatever memory decoders leak. ``on_done(index, result, failure, seconds)`` is called
    as items finish (in completion order); the returned lists are in input order. A
    KeyboardInterrupt stops the workers and leaves with ``worker_run``, the
    :class:`WorkerRun` so far. ``preload``: modules each worker imports before its first
    item, outside the time limits (one that is not installed is skipped); by default torch
    and the decoders, in that order (:func:`videoact.decode.load_decord`), as every caller
    decodes. Imported inside an item, torch took seconds of its limit, and a fresh worker
    after a killed one timed out on a good file on a busy CPU; so did decord (0.3 s, 2.4 s
    from a cold disk cache, beside a training run on 2 cores), which `videoact.decode`
    imports only when it first reads a file.
    """
    if max_items_per_worker < 1:
        raise ValueError(f"max_items_per_worker must be >= 1, got {max_items_per_worker}")
    ctx = mp.get_context("spawn")  # no fork: the parent may hold decoder/torch threads
    options, preload = dict(options or {}), tuple(preload)
    run = WorkerRun(results=[None] * len(items), failures=[None] * len(items))
    todo = deque(enumerate(items))
    report = on_done or (lambda _i, _r, _f, _s: None)

    # Workers need only videoact, not the user's script run again, unless fn is defined in
    # that script: then they must import it (as any spawned process does: behind its
    # `if __name__ == "__main__":`), or fn cannot be pickled to them.
    # Deaf to Ctrl-C from their start (no traceback while they import) to their end.
    hide_main = (functools.partial(main_script_hidden, deaf_to_ctrl_c=True)
                 if getattr(fn, "__module__", None) != "__main__" else contextlib.nullcontext)

    def start() -> _Worker:
        with hide_main():
            return _Worker(ctx, fn, options, preload)

    pool: list[_Worker | None] = [start() for _ in range(min(max(1, workers), len(items)))]
    try:
        for w in pool:
            if w is not None and todo:
                w.give(todo.popleft())
        while True:
            busy = [w for w in pool if w is not None and w.task is not None]
            if not busy:
                break
            wait_s = None
            if timeout:
                wait_s = max(0.0, min(w.deadline(timeout) for w in busy) - time.monotonic())
            ready = set(wait_for([w.conn for w in busy] + [w.proc.sentinel for w in busy], wait_s))
            now = time.monotonic()
            for slot, w in enumerate(pool):
                if w is None or w.task is None:
                    continue
                index = w.task[0]
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        while True:  # drain: a busy worker may have sent many beats
                            message = w.conn.recv()
                            assert message[1] == index, (message, index)
                            if message[0] == "done" or not w.conn.poll():
                                break
                    except (EOFError, OSError):  # the process died before answering
                        w.proc.join(5)
                        failure = _death_reason(w.proc)
                    else:
                        if message[0] in ("begin", "beat"):
                            w.started = now
                            continue
                        _, _, result, rss = message
                        run.max_rss_mb = max(run.max_rss_mb, float(rss))
                        run.results[index] = result
                        report(index, result, None, now - w.given)
                        w.task, w.items = None, w.items + 1
                        if w.items >= max_items_per_worker and todo:
                            w.stop()  # recycle: whatever the decoders leaked goes with the process
                            w = pool[slot] = start()
                        if todo:
                            w.give(todo.popleft())
                        continue
                elif timeout and now >= w.deadline(timeout):
                    if w.started is None:
                        failure = f"the worker process did not start within {max(STARTUP_TIMEOUT, timeout):g} s"
                    else:
                        failure = (f"timed out: no progress within {timeout:g} s (the decoder did not "
                                   "return; its worker process was killed)")
                else:
                    continue
                # Time-out or crash: report the item, replace the worker.
                w.kill()
                run.restarts += 1
                run.failures[index] = failure
                report(index, None, failure, now - w.given)
                pool[slot] = None
                if todo:
                    w = pool[slot] = start()
                    w.give(todo.popleft())
    except KeyboardInterrupt as exc:
        exc.worker_run = run  # type: ignore[attr-defined]  # the items done before it, for the caller's report
        raise
    finally:
        _stop_workers(pool, run)
    return run


def _stop_workers(pool: list[_Worker | None], run: WorkerRun) -> None:
    """Idle workers are asked to stop (up to 2 s each), busy ones killed. A Ctrl-C while
    waiting kills the rest at once and goes on up, with ``worker_run`` as in the loop."""
    interrupted: KeyboardInterrupt | None = None
    for w in pool:
        if w is None:
            continue
        try:
            if w.task is None and interrupted is None:
                w.stop()
            else:
                w.kill()
        except KeyboardInterrupt as exc:
            interrupted = exc
            w.kill()
    if interrupted is not None:
        interrupted.worker_run = run  # type: ignore[attr-defined]
        raise interrupted


def _check_task(path: str, beat: Callable[[], None], deep: bool, backend: str) -> dict[str, Any]:
    return check_file(path, deep=deep, backend=backend, beat=beat).to_dict()


# ---------------------------------------------------------------- the scan


def gather_sources(src: str | os.PathLike, root: str | os.PathLike | None = None,
                   ) -> tuple[list[str], list[str]]:
    """Paths to check for ``src`` and annotation problems.

    ``src`` is a folder (all files with a video extension below it, hidden ones
    skipped), a single video file, or an annotation list / CSV (every listed path,
    missing ones included, so that they are reported; lines that cannot be used, such
    as paths escaping the dataset root, come back as problems). A ``root`` that is not a
    folder raises ``NotADirectoryError`` naming it, as the other commands do.
    """
    from .datasets import VIDEO_EXTENSIONS, read_annotations
    from .decode import list_videos

    path = Path(src)
    if path.is_dir():
        return [str(p) for p in list_videos(path)], []
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"{src}: no such folder, video or annotation list")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return [str(path)], []
    # Labels do not matter here: a bare path list, or ids without their classes file, is checked too.
    samples, _classes, problems = read_annotations(path, root=root, check_files=False, labels=False)
    return [str(s.path) for s in samples], [str(p) for p in problems]


def check_videos(
    src: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    root: str | os.PathLike | None = None,
    workers: int | None = None,
    timeout: float | None = 60.0,
    deep: bool = False,
    backend: str = "auto",
    max_files_per_worker: int = 200,
    progress: Callable[[FileHealth], None] | None = None,
) -> HealthReport:
    """Check every video of ``src`` (a folder, a video, an annotation list, or a list of paths).

    Args:
        root: dataset root for relative paths in an annotation list (default: its folder).
        workers: worker processes (default: the CPU count, at most 8). ``0`` checks in
            this process, without a time limit (a hanging decoder then hangs the call).
        timeout: seconds a file may go without progress (a deep check reports every few
            frames); a worker past that is killed and the file reported unreadable.
            ``None`` or ``0``: no limit.
        deep: decode every frame instead of the first, middle and last.
        backend: "auto" (decord, OpenCV fallback), "decord" or "opencv".
        max_files_per_worker: a worker is replaced after this many files (bounded memory).
        progress: called with each :class:`FileHealth` as it is done.

    Returns a :class:`HealthReport` with files in the order of ``src``. A Ctrl-C while
    files are checked raises :class:`CheckInterrupted` (a KeyboardInterrupt) with the
    report of those checked so far.
    """
    started = time.monotonic()
    problems: list[str] = []
    if isinstance(src, (str, os.PathLike)):
        source = os.fspath(src)
        paths, problems = gather_sources(src, root)
    else:
        paths = [os.fspath(p) for p in src]
        source = f"{len(paths)} files"
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    if max_files_per_worker < 1:
        raise ValueError(f"max_files_per_worker must be >= 1, got {max_files_per_worker}")
    from .decode import time_limit

    timeout = time_limit(timeout)
    on_result = progress or (lambda _r: None)
    found: dict[int, FileHealth] = {}  # by position in paths, in the order they are done
    restarts, peak = 0, 0.0

    def report(unchecked: list[str] | None = None) -> HealthReport:  # None: not interrupted
        return HealthReport(source=source, files=[found[i] for i in sorted(found)], problems=problems,
                            workers=max(0, workers), timeout=(timeout or None) if workers > 0 else None,
                            deep=deep, seconds=time.monotonic() - started, worker_restarts=restarts,
                            max_worker_rss_mb=peak, interrupted=unchecked is not None,
                            unchecked=unchecked or [])

    try:
        if workers <= 0 or not paths:
            for i, p in enumerate(paths):
                found[i] = check_file(p, deep=deep, backend=backend)
                on_result(found[i])
            peak = _peak_rss_mb() if paths else 0.0
        else:
            def done(index: int, data: dict[str, Any] | None, failure: str | None, seconds: float) -> None:
                health = FileHealth(**data) if data is not None else FileHealth(
                    path=paths[index], status=UNREADABLE, reason=failure, seconds=seconds)
                found[index] = health
                on_result(health)

            run = run_killable(_check_task, paths, workers=workers, timeout=timeout or None,
                               options={"deep": deep, "backend": backend},
                               max_items_per_worker=max_files_per_worker, on_done=done)
            restarts, peak = run.restarts, run.max_rss_mb
    except KeyboardInterrupt as exc:  # what was found so far is kept (run_killable has stopped its workers)
        if hasattr(exc, "worker_run"):  # how the workers fared until then
            restarts, peak = exc.worker_run.restarts, exc.worker_run.max_rss_mb
        elif workers <= 0 and paths:  # checked in this process
            peak = _peak_rss_mb()
        raise CheckInterrupted(report([p for i, p in enumerate(paths) if i not in found])) from exc
    return report()


# ---------------------------------------------------------------- outputs


def write_report(report: HealthReport, path: str | os.PathLike) -> Path:
    """The JSON report, written atomically."""
    from .atomic import atomic_write_text

    atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return Path(path)


QUARANTINE_HEADER = "# videoact quarantine list: one path per line; `#` lines are comments"


def write_quarantine(report: HealthReport, path: str | os.PathLike,
                     statuses: Iterable[str] = (UNREADABLE,)) -> list[FileHealth]:
    """Write the files with ``statuses`` (default: unreadable) as an exclusion list.

    One absolute path per line, each after a ``#`` comment line with its status and
    reason. Written atomically; returns the files listed. A name holding a line break
    cannot be listed one per line: such files are left out (``warnings.warn`` names them;
    they need renaming).
    """
    import warnings

    from .atomic import atomic_write

    wanted = set(statuses)
    unknown = wanted - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown statuses {sorted(unknown)}: use {STATUSES}")
    chosen = [f for f in report.files if f.status in wanted]
    unlisted = [f for f in chosen if "\n" in f.path or "\r" in f.path]
    chosen = [f for f in chosen if f not in unlisted]
    if unlisted:
        names = ", ".join(repr(f.path) for f in unlisted[:5]) + (" ..." if len(unlisted) > 5 else "")
        warnings.warn(f"{path}: {len(unlisted)} {'file' if len(unlisted) == 1 else 'files'} left out of the "
                      f"quarantine list, a line break in the name (rename to exclude): {names}", VideoactWarning,
                      stacklevel=2)
    lines = [QUARANTINE_HEADER, f"# from `videoact check {report.source}`: {len(chosen)} files"]
    if report.interrupted:
        lines.append(f"# the check was interrupted: {len(report.unchecked)} files were not checked")
    for f in chosen:
        reason = (f.reason or "").replace("\n", " ").replace("\r", " ")
        lines.append(f"# {f.status}: {reason}")
        lines.append(os.path.abspath(f.path))
    # surrogateescape: a file name that is not valid UTF-8 is written back as its own bytes
    with atomic_write(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
    return chosen


def _key(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def read_exclude_list(path: str | os.PathLike) -> set[str]:
    """Paths of an exclusion list (as :func:`write_quarantine` writes, or by hand).

    One path per line; blank lines and lines starting with ``#`` are ignored; relative
    paths are relative to the list's folder. Returns normalized real paths (compare
    with :func:`exclude_paths`). Raises ``FileNotFoundError`` naming the list.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")  # as os.fsdecode reads file names
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: exclusion list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the exclusion list ({exc})") from None
    out = set()
    # Lines end at "\n" (and "\r\n") only: str.splitlines() also splits at U+2028, U+0085,
    # "\x0c"..., which file names may hold. Spaces around a name are taken as typing slips.
    for line in text.split("\n"):
        item = line.rstrip("\r").strip(" \t")
        if not item or item.startswith("#"):
            continue
        p = Path(item)
        out.add(_key(p if p.is_absolute() else path.parent / p))
    return out


def exclude_paths(paths: Sequence[Any], excluded: set[str],
                  key: Callable[[Any], str | os.PathLike] = lambda p: p) -> tuple[list[Any], list[Any]]:
    """Split ``paths`` (or objects, with ``key`` giving each one's path) into
    ``(kept, excluded)`` by an exclusion set from :func:`read_exclude_list`."""
    kept, dropped = [], []
    for item in paths:
        (dropped if _key(key(item)) in excluded else kept).append(item)
    return kept, dropped
