"""Feature extraction: videos in, one cached ``[T, D]`` feature file per video out.

The pipeline, stage by stage (they overlap):

1. DataLoader worker processes (on a CPU machine with up to 2 cores: the main process,
   one thread per core, each on its own video, between backbone batches; see
   :func:`decode_loader`) open each video (decord, OpenCV fallback), verify its
   frame count, choose frame indices and decode them in chunks of at most
   ``chunk_frames`` frames, so memory stays bounded for long videos. Each worker owns
   its own readers and decodes with one thread.
2. The main process moves the uint8 chunks to the device (pinned, non-blocking on
   CUDA), resizes and normalizes them there, and packs frames from several videos
   into one backbone batch of ``batch_size`` frames.
3. The backbone (a copy with BatchNorm folded into the convolutions, and on the CPU
   activations fused into them) runs under ``torch.inference_mode``, channels_last, in
   float32 (``amp=True``: bf16/fp16 autocast on CUDA, bf16 on CPUs with native bf16), on
   exactly ``batch_size`` frames per call (the last call of a run is padded). Fixed
   shapes make a frame's features independent of which other videos share its batch,
   so one process and N distributed ranks write byte-identical features (with the same
   threads per process), and ``torch.compile`` compiles once.
4. Features leave the GPU through pinned memory without blocking; a writer thread
   waits for them and saves each finished video atomically, off the critical path.

Videos whose cache is complete and current are skipped, so an interrupted run resumes.
Per-file failures are collected, written to ``OUT/failures.jsonl`` and returned. A decode
worker that dies (a crash in a decoder, the out-of-memory killer) costs only the file it
was reading, which is read once more alone first (``_LoaderSurvivingCrashes``); decoding in
the main process (a CPU machine with up to 2 cores) has no such shield.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import json
import math
import multiprocessing as mp
import numbers
import os
import queue
import shutil
import signal
import threading
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .atomic import (error_text, not_a_file, remove_dead_temporaries, temporary_path, temporary_prefix,
                     update_failure_log, writable_folder)
from .device import autocast_dtype, precision_name, resolve_device
from .feature_cache import FAILURES_FILE, VIDEO_CHANGED, cache_path, cache_staleness, save_features, source_stat
# The backbone speed-ups have their own module; importable from here too, where they were first.
from .fast_inference import fold_batchnorm, fuse_conv_activations, inference_model, keep_freed_memory  # noqa: F401
from .notices import VideoactWarning
from .spawn import exit_without_teardown, hear_ctrl_c, main_script_hidden, signal_name


@dataclass
class SamplingSpec:
    """Which frames of each video to extract.

    ``mode``: ``"all"`` (every frame, up to ``max_frames``), ``"uniform"`` (TSN segment
    centres, ``num_segments``), ``"dense"`` (every ``stride``-th frame) or ``"fps"``
    (frames at ``target_fps``). ``segment_frames`` (uniform only): frames per segment, the
    centres of that many equal parts of it, so that training's temporal jitter has frames to
    choose from; an odd count keeps the segment centre among them (what evaluation takes).
    """

    mode: str = "all"
    num_segments: int = 16
    stride: int = 1
    target_fps: float = 8.0
    max_frames: int | None = None
    segment_frames: int = 1

    def __post_init__(self) -> None:
        # Checked once here, not as one failure per video when each is sampled.
        if self.mode not in ("all", "uniform", "dense", "fps"):
            raise ValueError(f"unknown sampling mode {self.mode!r}: use all, uniform, dense or fps")
        for name in ("num_segments", "stride", "segment_frames") + (("max_frames",) if self.max_frames is not None
                                                                     else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"sampling {name} must be a positive integer, got {value!r}")
        if isinstance(self.target_fps, bool) or not (isinstance(self.target_fps, numbers.Real)
                                                     and 0 < self.target_fps < math.inf):
            raise ValueError(f"sampling target_fps must be a positive number, got {self.target_fps!r}")

    def indices(self, num_frames: int, video_fps: float, timestamps: Sequence[float] | None = None) -> list[int]:
        """Frame indices to cache. ``timestamps`` (seconds, one per frame): for ``"fps"``
        the frames on screen at each time (variable-frame-rate video is common from
        phones); without them times are taken as ``index / video_fps``."""
        from . import sampling

        if self.mode == "all":
            idx = list(range(num_frames))
        elif self.mode == "uniform":
            # J frames a segment: the centres of N * J sub-segments. For odd J the middle one
            # of each J is the segment centre, floor((2k+1) n / 2N), as with J = 1.
            idx = sampling.uniform_segments(num_frames, self.num_segments * self.segment_frames, train=False)
        elif self.mode == "dense":
            idx = sampling.dense_indices(num_frames, self.stride)
        elif self.mode == "fps" and timestamps is not None and len(timestamps) == num_frames:
            idx = sampling.timestamp_indices(timestamps, self.target_fps)
        elif self.mode == "fps":
            idx = sampling.fps_indices(num_frames, video_fps, self.target_fps)
        else:
            raise ValueError(f"unknown sampling mode {self.mode!r}: use all, uniform, dense or fps")
        return sampling.spread(idx, self.max_frames)  # the whole time span, not the first max_frames


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class ExtractResult:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    frames: int = 0  # frames of the videos written
    seconds: float = 0.0
    # Where the main process spent its time: "startup" (until the first decoded chunk),
    # "wait" (for decoded chunks after that), "preprocess", "backbone", "write" (waiting
    # for the writer thread at the end) and "teardown" (waiting for decode workers to
    # exit). On CUDA "preprocess" and "backbone" only count launching asynchronous work.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # What the features were made with (backbone, weights, layer, ...): what a cache file
    # must record to hold them (videoact.feature_cache.settings_differences).
    settings: dict[str, Any] = field(default_factory=dict)
    # Why OUT/failures.jsonl could not be brought up to date (a full disk), naming it; None
    # when it was. The run's failures are in ``failed`` all the same.
    failure_log_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


# ---------------------------------------------------------------- stage 1: decoding


class _DecodeThread:
    """A daemon thread that advances chunk generators on request, for side-by-side
    decoding in the main process. Its :meth:`guard` marks each decoder call with a time
    limit that :meth:`result`, in the calling thread, enforces."""

    _PHASE = object()  # "a new guarded call started": the waiting side re-reads its limit

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self.phase: tuple[str, float, float | None] = ("", 0.0, None)
        self.thread = threading.Thread(target=self._run, name="videoact-decode", daemon=True)
        self.thread.start()

    def guard(self, fn, timeout: float | None, what: str):
        self.phase = (what, time.monotonic(), timeout or None)
        self.replies.put(self._PHASE)
        try:
            return fn()
        finally:
            self.phase = ("", 0.0, None)

    def _run(self) -> None:
        while True:
            chunks = self.requests.get()
            if chunks is None:
                return
            try:
                item = next(chunks, None)
            except BaseException as exc:  # _read reports file errors itself; this is a bug
                item = exc
            self.replies.put(item)

    def result(self) -> dict | None:
        """The next chunk of the generator last requested (``None`` at its end); raises
        ``TimeoutError`` when a guarded call runs past its limit."""
        while True:
            phase = self.phase
            what, began, limit = phase
            wait = None if limit is None else max(0.0, began + limit - time.monotonic())
            try:
                item = self.replies.get(timeout=wait)
            except queue.Empty:
                if self.phase is phase:
                    from .decode import decoder_hung

                    raise decoder_hung(what, limit) from None
                continue
            if item is self._PHASE:
                continue
            if isinstance(item, BaseException):
                raise item
            return item


MAX_CHUNK_BYTES = 256 * 2**20  # decoded frames per chunk (fewer frames for huge pictures)


class _DecodingJournal:
    """``OUT/.decoding-<pid>-<random>.json``: the videos this process is decoding in its own
    threads right now. A decoder that crashes there (C code: no exception to catch) or the
    out-of-memory killer ends the whole run; the journal it leaves tells the next run which
    files were open, and that run reads them alone in a worker process first
    (:meth:`left_by_dead_runs`), so a file that kills its decoder fails by itself instead of
    ending every run that meets it. Written without fsync: it must outlive the process, not
    the machine (0.13 ms a video here).

    A run is alive while it holds the ``flock`` of its ``.lock`` file beside, which the
    kernel drops however the process ends: a pid would not do (a restarted container's
    first process has the dead one's pid, two containers sharing a host name each see the
    other's pids as gone). Where file locks do not work (no ``fcntl``, some network file
    systems) there is no journal."""

    def __init__(self, folder: Path) -> None:
        stem = f".decoding-{os.getpid()}-{os.urandom(4).hex()}"
        self.path, self.lock_path = folder / f"{stem}.json", folder / f"{stem}.lock"
        self.open: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()
        self._fd: int | None = None  # the lock file, held (flock) from the first write to close()
        self._broken = False  # no lock to be had: no journal

    def begin(self, video: str) -> None:
        with self.lock:
            self.open[video] += 1
            self._write()

    def end(self, video: str) -> None:
        with self.lock:
            self.open[video] -= 1
            if self.open[video] <= 0:
                del self.open[video]
            self._write()

    def _write(self) -> None:
        # Only a help for the next run: never a reason to stop this one.
        if self._broken or (self._fd is None and not self.open):
            return
        if self._fd is None:
            try:
                import fcntl

                fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            except (OSError, ImportError):
                self._broken = True
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # file locks do not work here
                os.close(fd)
                with contextlib.suppress(OSError):
                    self.lock_path.unlink()
                self._broken = True
                return
            self._fd = fd
        try:
            if self.open:
                tmp = temporary_path(self.path)
                tmp.write_text(json.dumps({"pid": os.getpid(), "open": sorted(self.open)}), encoding="utf-8")
                os.replace(tmp, self.path)
            else:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def _release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(self._fd)  # drops the flock
            self._fd = None

    def close(self) -> None:
        """This process's run ended: nothing of it is open any more."""
        with self.lock:
            self.open.clear()
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            self._release()

    @staticmethod
    def left_by_dead_runs(folder: Path) -> list[tuple[Path, int, list[str]]]:
        """The journals of runs that died: ``(file, pid, videos open)``."""
        try:
            import fcntl
        except ImportError:
            return []
        found = []
        try:
            names = sorted(n for n in os.listdir(folder) if n.startswith(".decoding-") and n.endswith(".json"))
        except OSError:
            return found
        for name in names:
            lock = folder / (name[:-len(".json")] + ".lock")
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                fd = None  # its run is gone (a journal is written only while its lock is held)
            except OSError:
                continue
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # held: that run is alive (or locks do not work here: cannot tell)
                    continue
                finally:
                    os.close(fd)
            try:
                data = json.loads((folder / name).read_text(encoding="utf-8"))
                pid, listed = int(data["pid"]), list(data["open"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append((folder / name, pid, [v for v in listed if isinstance(v, str)]))
        return found


class _VideoChunks(IterableDataset):
    """Yields decoded chunks ``{"video", "frames" [t, H, W, 3] uint8, "indices", "last"}``.

    Videos are dealt out to workers round-robin; one worker reads a video from start
    to end, so its chunks arrive in order.
    """

    def __init__(self, paths: Sequence[str], sampling: SamplingSpec, chunk_frames: int,
                 backend: str, file_timeout: float | None, inline_threads: int = 1):
        self.paths = list(paths)
        self.sampling = sampling
        self.chunk_frames = chunk_frames
        self.backend = backend
        self.file_timeout = file_timeout
        self.inline_threads = max(1, int(inline_threads))
        # Shared with the worker processes: the video each one is reading (-1: none), so
        # that the parent knows which file was open in a worker that died.
        self.reading: Any = None
        self.journal: _DecodingJournal | None = None  # decoding in this process: what is open

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = range(worker, len(self.paths), workers)
        if self.backend != "opencv" and mine:
            # decord is imported at the first file it opens, inside that file's time limit
            # (0.3 s, 2.4 s from a cold disk cache, more on a busy machine: a good file
            # beside a hung one timed out): imported here, in the process that decodes,
            # outside the limits.
            from .decode import load_decord

            with contextlib.suppress(Exception):  # not installed or broken: the files say so
                load_decord()
        if info is None and self.inline_threads > 1:
            yield from self._read_side_by_side(mine)
            return
        for video in mine:
            if info is not None and self.reading is not None:
                self.reading[worker] = video
            yield from self._read(video)
            if info is not None and self.reading is not None:
                self.reading[worker] = -1

    def _read_side_by_side(self, videos: Iterable[int]) -> Iterator[dict]:
        """Main-process decoding on several cores: ``inline_threads`` videos at a time,
        one thread each (decord and OpenCV release the GIL while decoding). They advance
        in lock step, one chunk per open video per step, and nothing is decoded while the
        caller works on what was yielded: decoding beside a CPU backbone slows it (see
        :func:`decode_loader`), decoding between its batches on all cores does not.
        Chunks come out in a fixed order (slot by slot), so runs are reproducible.

        The time limits are kept here, in the calling thread, not by a helper thread per
        call: on 2 cores those extra hand-offs cost as much as the second core gained."""
        todo = iter(videos)
        threads = [_DecodeThread() for _ in range(self.inline_threads)]
        slots: list[tuple[int, Iterator[dict]] | None] = [None] * len(threads)
        try:
            while True:
                for i, slot in enumerate(slots):
                    if slot is None:
                        video = next(todo, None)
                        if video is not None:
                            slots[i] = (video, self._read(video, guard=threads[i].guard))
                if not any(slots):
                    return
                for i, slot in enumerate(slots):
                    if slot is not None:
                        threads[i].requests.put(slot[1])
                items = []
                for i, slot in enumerate(slots):
                    if slot is None:
                        continue
                    video, chunks = slot
                    try:
                        item = threads[i].result()
                    except TimeoutError as exc:  # that thread is stuck in the decoder: leave it
                        item = {"video": video, "error": str(exc)}
                        threads[i] = _DecodeThread()
                        slots[i] = None
                    else:
                        if item is None or "error" in item or item["last"]:
                            chunks.close()  # its reader closes now, not at the next step
                            slots[i] = None
                    if item is not None:
                        items.append(item)
                yield from items
        finally:
            for slot in slots:
                if slot is not None:
                    try:
                        slot[1].close()
                    except ValueError:  # still running in its thread (we were interrupted)
                        pass
            for thread in threads:
                thread.requests.put(None)
            for thread in threads:
                # Let them end now: a daemon thread still ending at interpreter exit can
                # abort the process (C++ frames under a forced unwind).
                thread.thread.join(5.0)

    def _times(self, reader: Any, guard: Any, timeout: float | None, path: str) -> Any:
        """The frames' timestamps where the sampling needs them (``"fps"``), else None."""
        if self.sampling.mode != "fps":
            return None
        return guard(lambda: reader.timestamps(), timeout, f"{path}: reading timestamps")

    def _read(self, video: int, guard=None) -> Iterator[dict]:
        """The chunks of one video, the last marked ``"last"``; a failure ends it with
        one ``{"video", "error"}`` item. ``guard(fn, timeout, what)`` runs each decoder
        call under a time limit (default :func:`call_with_timeout`)."""
        from .decode import VideoDecodeError, call_with_timeout, open_video

        guard = guard or call_with_timeout

        path = self.paths[video]
        timeout = self.file_timeout
        started = time.monotonic()
        reader = None
        journal = self.journal if get_worker_info() is None else None
        if journal is not None:
            journal.begin(path)
        try:
            reader = guard(lambda: open_video(path, backend=self.backend, num_threads=1),
                           timeout, f"{path}: opening")
            num_frames = guard(lambda: len(reader), timeout, f"{path}: counting frames")
            if num_frames == 0:
                raise RuntimeError(f"{path}: no decodable frames")
            indices = self.sampling.indices(num_frames, reader.fps, self._times(reader, guard, timeout, path))
            # Chunks hold at most MAX_CHUNK_BYTES of frames: 64 frames of 4000 x 2250
            # would be 1.7 GB per chunk, times the prefetched chunks.
            step = max(1, min(self.chunk_frames, MAX_CHUNK_BYTES // max(1, 3 * reader.width * reader.height)))
            first_backend, start = reader.backend, 0
            while start < len(indices):
                part = indices[start:start + step]
                left = None if not timeout else max(1.0, timeout - (time.monotonic() - started))
                try:
                    clip = guard(lambda: reader.get(part), left, f"{path}: decoding")
                except VideoDecodeError:
                    # decord opened the file but cannot decode it, and the OpenCV fallback
                    # decodes fewer frames than decord counted. Nothing was sent yet:
                    # choose the frames again among those OpenCV decodes.
                    if start > 0 or reader.backend == first_backend:
                        raise
                    first_backend = reader.backend
                    num_frames = guard(lambda: len(reader), left, f"{path}: counting frames")
                    indices = self.sampling.indices(num_frames, reader.fps, self._times(reader, guard, left, path))
                    continue
                yield {
                    "video": video,
                    "frames": clip.frames,
                    "indices": clip.indices,
                    "fps": float(reader.fps),
                    "num_frames": int(num_frames),
                    "backend": str(reader.backend),
                    "last": start + step >= len(indices),
                }
                start += step
        except Exception as exc:  # a bad file must not stop the run
            message = str(exc)
            if path not in message:
                message = f"{path}: {message}"
            yield {"video": video, "error": message}
        finally:
            if reader is not None:
                try:
                    reader.close()
                except Exception:
                    pass
            if journal is not None:
                journal.end(path)


def _worker_init(parent: int, _worker_id: int) -> None:
    """Start-up of a decode worker of the process ``parent``. It ends with its parent:
    torch's watchdog takes the parent to be whatever process is the parent when the worker
    loop starts, so a parent killed while its workers still imported torch left them to
    init (pid 1), watched for ever (seen minutes later, about 1 GB each)."""
    from .health import _die_with

    _die_with(parent)  # gone if the parent died already; on Linux, killed with it from now on
    # Each worker decodes with one thread; the workers together fill the cores.
    from .decode import limit_threads

    limit_threads(1)
    # At its end (atexit: after multiprocessing has flushed the worker's queues).
    atexit.register(exit_without_teardown)
    # torch's worker loop, which runs this, ends quietly on KeyboardInterrupt: from here on
    # Ctrl-C ends this worker without a traceback.
    hear_ctrl_c()


# ---------------------------------------------------------------- stage 4: writing


class _Writer:
    """Saves finished videos on a background thread so the backbone never waits on disk."""

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=64)
        self.errors: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self._run, daemon=True, name="videoact-writer")
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            source, path, parts, indices, metadata, ready, feature_dim = item
            try:
                if ready is not None:
                    ready.synchronize()  # the non-blocking device-to-host copies have landed
                features = torch.cat(parts) if parts else torch.zeros(0, feature_dim)
                save_features(path, features, indices, metadata)
            except Exception as exc:  # e.g. disk full: report, keep earlier files
                self.errors.append((source, f"{source}: could not write {path}: {error_text(exc)}"))

    def put(self, *item) -> None:
        self.queue.put(item)

    def close(self) -> list[tuple[str, str]]:
        self.queue.put(None)
        self.thread.join()
        return self.errors


# ---------------------------------------------------------------- the pipeline


def cache_key(path: Path, root: Path | None) -> str:
    """The cache key of ``path``: relative to ``root`` (through resolved paths; else as
    listed, e.g. a symlink into a content store outside ``root``), otherwise
    ``__outside__/<absolute path>``. Never the bare file name: two videos called
    ``clip.mp4`` in different folders must not share (and overwrite) one cache file."""
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
        if not rel.startswith("..") and not os.path.isabs(rel):
            return Path(rel).as_posix()
    from .datasets import OUTSIDE_PREFIX

    return OUTSIDE_PREFIX + Path(os.path.abspath(path)).as_posix().lstrip("/")


def feature_path(out_dir: str | os.PathLike, video: str | os.PathLike,
                 root: str | os.PathLike | None = None) -> Path:
    """Where :func:`extract_features` puts the features of ``video`` when called with this
    ``out_dir`` and ``root``: ``OUT/<video relative to root>.safetensors``, or without a
    root (or for a video outside it) ``OUT/__outside__/<absolute path>.safetensors``."""
    return cache_path(out_dir, cache_key(Path(video), None if root is None else Path(root)))


def _reuse_under_another_key(out_dir: Path, video: Path, rel: str, target: Path, settings: dict[str, Any],
                             folders: dict[Path, bool]) -> bool:
    """Whether the features of ``video`` were found cached under another key of it (relative
    to another folder above it, or as an outside path) and linked (else copied) to ``target``.

    Why: keys are relative to a root, and a training run's root is the common folder of its
    splits: a ``--test`` added to a run moved it up a level, and every training video was
    extracted again under its new key (hours on a real dataset). Only a file made with
    ``settings`` from the video as it is now (its size and mtime) is taken. ``folders``
    remembers which cache folders exist, over the calls of one extraction: a first
    extraction into an empty cache then asks the file system little (a slow network one)."""
    from .datasets import OUTSIDE_PREFIX

    keys = []
    for path in dict.fromkeys((Path(os.path.abspath(video)), video.resolve())):
        keys += [path.relative_to(folder).as_posix() for folder in path.parents]
        keys.append(OUTSIDE_PREFIX + path.as_posix().lstrip("/"))
    for key in dict.fromkeys(keys):
        try:
            candidate = cache_path(out_dir, key)
        except ValueError:
            continue
        if key == rel or candidate == target:
            continue
        if candidate.parent not in folders:
            folders[candidate.parent] = candidate.parent.is_dir()
        if not folders[candidate.parent] or not candidate.is_file():
            continue
        if cache_staleness(candidate, settings, video) != []:
            continue
        temporary = temporary_path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(candidate, temporary)
            except OSError:  # a file system without hard links
                shutil.copyfile(candidate, temporary)
            os.replace(temporary, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            return False
        return True
    return False


def _remove_dead_temporaries(out_dir: Path, targets: Sequence[Path] | None = None) -> None:
    """Remove temporary files left by killed runs (their writer pid is gone; a running
    one's may be another rank's file in progress); with ``targets``, only the temporaries
    of those cache files."""
    if targets is None:
        for folder, _dirs, _files in os.walk(out_dir):
            remove_dead_temporaries(folder)
        return
    prefixes: dict[Path, set[str]] = defaultdict(set)
    for t in targets:
        prefixes[t.parent].add(temporary_prefix(t))
    for folder, starts in prefixes.items():
        remove_dead_temporaries(folder, tuple(starts))


def decode_loader(paths: Sequence[str | os.PathLike], sampling: SamplingSpec, *, chunk_frames: int = 64,
                  backend: str = "auto", file_timeout: float | None = 300.0, num_workers: int | None = None,
                  pin_memory: bool = False) -> DataLoader:
    """The decoding stage alone: a DataLoader whose items are chunks of one video,
    ``{"video", "frames" uint8 [t, H, W, 3], "indices" [t], "fps", "num_frames",
    "backend", "last"}``, or ``{"video", "error"}`` for a file that failed.
    ``num_workers=None``: this process's share of the cores (all of them, or
    ``cores / LOCAL_WORLD_SIZE`` under torchrun) when the backbone runs on a GPU
    (``pin_memory``); with a CPU backbone, none on up to 2 cores (decoding in the main
    process between batches), else one less than the cores.

    Why none on 2 cores: the backbone's two OpenMP threads use both cores, and a decode
    worker running beside them preempts one, which stalls the other at every operator.
    Measured end to end (EfficientNet-Lite0, batch 64, 2 cores, steady state, medians of
    3): 320x240 clips 241 frames/s inline against 215 with a worker; 1280x720 clips, 16
    frames of each, 126 against 84; every frame of them 138 against 108.

    Decoding in the main process uses one thread per core of this process's share (at
    most 4), each on its own video, between the backbone's batches (see
    ``_VideoChunks._read_side_by_side``): on 2 cores, 16 short clips decoded in 77-89 ms
    against 123-150 ms with one thread.

    The workers end with this process (on Linux with the thread that starts them, at
    ``iter``), however it ends."""
    from .decode import time_limit

    file_timeout = time_limit(file_timeout, "file_timeout")  # -1 reported every file as hung
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    cores = max(1, (os.cpu_count() or 2) // local_ranks)
    if num_workers is None:
        wanted = cores if pin_memory else (0 if cores <= 2 else cores - 1)
        num_workers = min(len(paths), max(0, wanted))
    inline_threads = 1 if num_workers else min(cores, 4, max(1, len(paths)))
    dataset = _VideoChunks([str(p) for p in paths], sampling, chunk_frames, backend, file_timeout,
                           inline_threads)
    context = mp.get_context("spawn") if num_workers else None
    if context is not None:
        dataset.reading = context.RawArray("q", [-1] * num_workers)
    return DataLoader(
        dataset, batch_size=None, num_workers=num_workers,
        worker_init_fn=functools.partial(_worker_init, os.getpid()),  # the workers end with this process
        pin_memory=pin_memory, prefetch_factor=4 if num_workers else None,
        persistent_workers=False, multiprocessing_context=context,
        generator=torch.Generator(),  # iter() draws a seed: not from the caller's global generator
    )


class _LoaderSurvivingCrashes:
    """The chunks of :func:`decode_loader` over ``paths``, carrying on when a decode worker
    dies (a crash in a decoder's C code, the out-of-memory killer), which stops a
    DataLoader for good. The videos the dead worker was reading are read again alone, in
    a worker of their own; one whose worker dies again fails, ``{"video", "error"}``; the
    others go on in a fresh loader. Videos already under way in any worker start again:
    ``{"video", "restart": True}`` first tells the consumer to drop their chunks so far.
    Items carry indices into ``paths``. ``make_loader(paths, num_workers)`` builds a
    loader (``num_workers=None``: the caller's choice). ``suspects``: videos to read alone
    first, each with how it killed a decoder before (a run that died reading it)."""

    def __init__(self, paths: Sequence[str], make_loader: Any, suspects: dict[int, str] | None = None) -> None:
        self.paths = list(paths)
        self.make_loader = make_loader
        self.suspects = dict(suspects or {})
        self.batches: Any = None  # the current loader's iterator
        self._sigchld: Any = None  # the SIGCHLD handler found (torch's), while ours is set
        self._waiting = False  # in the loader's next()

    def _watch_sigchld(self) -> None:
        """Replace torch's SIGCHLD handler, which starting a DataLoader's workers installs, by
        :meth:`_on_sigchld`. torch's raises "DataLoader worker ... is killed by signal" in the
        main thread at whatever line it runs: mostly the backbone, between the loader's
        items, outside :meth:`__iter__`, so the whole run stopped. Main thread only (no
        other sets handlers); :meth:`release` puts the one found back."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGCHLD"):
            return
        current = signal.getsignal(signal.SIGCHLD)
        if current != self._on_sigchld:
            self._sigchld = current
            signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_sigchld(self, signum: int, frame: Any) -> None:
        # Raise only where __iter__ catches it: while it waits for the loader. A death at any
        # other time is found before the next wait (_dead_workers), at once either way.
        if self._waiting and self._dead_workers():
            raise RuntimeError("DataLoader worker exited unexpectedly")

    def _dead_workers(self) -> list[tuple[int, int]]:
        """``(worker id, exit code)`` of the current loader's workers that died. Workers end
        only when the loader is shut down, so one that ended while still counted active died,
        whatever its status: 0 too, as our exit at the end of a worker (``atexit``: before
        the interpreter's teardown) reports whatever ended it in Python (a SystemExit)."""
        active = getattr(self.batches, "_workers_status", [])
        return [(i, w.exitcode) for i, w in enumerate(getattr(self.batches, "_workers", []))
                if w.exitcode is not None and (w.exitcode != 0 or (i < len(active) and active[i]))]

    def release(self) -> None:
        """Put the SIGCHLD handler found back (call from the main thread once done)."""
        if self._sigchld is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGCHLD, self._sigchld)
            self._sigchld = None

    def shutdown(self) -> None:
        """Stop the current loader's worker processes (not waiting for them to be collected)."""
        try:
            getattr(self.batches, "_shutdown_workers", lambda: None)()
        except RuntimeError as exc:  # one died as it was stopped: it was being stopped anyway
            if "DataLoader worker" not in str(exc):
                raise

    def __iter__(self) -> Iterator[dict]:
        ended: set[int] = set()
        alone: list[int] = sorted(self.suspects)  # videos open where a decoder died: each in its own worker
        died: dict[int, str] = dict(self.suspects)  # video -> how its decoder died the first time
        while len(ended) < len(self.paths):
            if alone:
                subset, workers = [alone.pop(0)], 1
            else:
                subset, workers = [v for v in range(len(self.paths)) if v not in ended], None
            loader = self.make_loader([self.paths[v] for v in subset], workers)
            begun: set[int] = set()  # videos of this loader with chunks sent
            progressed = False
            self.batches = None
            try:
                # The spawned decode workers start here: not the user's script again, and
                # deaf to Ctrl-C until their loop (which ends quietly on it) runs.
                with main_script_hidden(deaf_to_ctrl_c=True):
                    self.batches = iter(loader)
                self._watch_sigchld()
                while True:
                    if self._dead_workers():  # died while the caller worked on the last item
                        raise RuntimeError("DataLoader worker exited unexpectedly")
                    self._waiting = True
                    try:
                        item = next(self.batches)
                    except StopIteration:
                        break
                    finally:
                        self._waiting = False
                    video = item["video"] = subset[item["video"]]
                    begun.add(video)
                    if "error" in item or item["last"]:
                        ended.add(video)
                        progressed = True
                    yield item
                    if len(ended) == len(self.paths):
                        return  # all there: not waiting for the loader's end of data
                if not set(subset) <= ended:  # each video ends with its last chunk or an error
                    raise RuntimeError(f"the decode loader ended before {len(set(subset) - ended)} of its videos")
            except RuntimeError as exc:
                if "DataLoader worker" not in str(exc):
                    raise
                dead = self._dead_workers()
                reading = loader.dataset.reading
                open_in_dead = [reading[i] for i, _ in dead if reading is not None and reading[i] >= 0]
                self.shutdown()
                for video in sorted(begun - ended):
                    yield {"video": video, "restart": True}
                how = "; ".join(f"its decode worker {_death(code)}" for _, code in dead) or str(exc)
                if workers == 1 and open_in_dead:  # read alone, and its worker died in it again: the file's doing
                    video = subset[0]
                    ended.add(video)
                    yield {"video": video, "error": f"{self.paths[video]}: the decoder crashed on this file twice "
                                                    f"({died[video]}; then {how})"}
                    continue
                suspects = [subset[v] for v in open_in_dead if subset[v] not in ended]
                if not suspects and not progressed:  # not a file's doing (workers die at start-up?)
                    raise
                for video in suspects:
                    died[video] = how
                alone.extend(suspects)
            finally:
                if len(ended) < len(self.paths):
                    self.shutdown()


def _death(exitcode: int) -> str:
    """A worker's exit status in words: ``"was killed by SIGSEGV"``, ``"ended with exit status 1"``."""
    if exitcode < 0:
        return f"was killed by {signal_name(-exitcode)}"
    return f"ended with exit status {exitcode}"


def default_batch_size(device: str | torch.device, image_size: int) -> int:
    """Frames per backbone batch when none is given: 64, and on a CPU at most as many as
    hold ``64 x 224 x 224`` pixels (16 at 448 px, 21 at 384).

    Why: on a CPU, batches of large frames need GBs of activation maps per call. Measured
    (EfficientNet-Lite0 to its stride-8 stage at 448 px, 2 cores): 40 frames/s at batch
    64, 124-128 at 16, 143-145 at 4-8; at 224 px batches of 8 to 64 ran alike (about
    485 frames/s). On a GPU, where larger batches only help, 64 as before."""
    if torch.device(device).type != "cpu":
        return 64
    return max(1, min(64, (64 * 224 * 224) // (int(image_size) ** 2)))


def _normalization(backbone) -> str | dict[str, list[float]]:
    """``"default"`` for the backbone's usual mean/std, else the values (caches made before
    2026-11-30 recorded none and count as made with the default)."""
    from .backbones import default_normalization

    mean, std = [float(v) for v in backbone.mean], [float(v) for v in backbone.std]
    default_mean, default_std = default_normalization(backbone.name)
    if mean == [float(v) for v in default_mean] and std == [float(v) for v in default_std]:
        return "default"
    return {"mean": mean, "std": std}


def extraction_settings(backbone, sampling: SamplingSpec, resize: str, precision: str = "float32") -> dict[str, Any]:
    """The settings a cache file must match to be reused (``precision``: the backbone's
    compute dtype, :func:`videoact.device.precision_name`)."""
    return {
        "backbone": backbone.name,
        "weights": backbone.weights_id,
        "pooling": backbone.pooling,
        "layer": getattr(backbone, "layer", "last"),
        "image_size": int(backbone.input_size),
        "resize": resize,
        # "times": fps sampling picks by the frames' timestamps (before 2026-11-29: by
        # index / average rate, wrong on variable-frame-rate video; those caches are stale).
        "sampling": {**asdict(sampling), **({"times": "timestamps"} if sampling.mode == "fps" else {}),
                     # "centres": uniform segment centres that mirror under time reversal
                     # (before 2026-12-01 a tie took the later frame everywhere; those are stale).
                     **({"centres": "symmetric"} if sampling.mode == "uniform" else {})},
        "precision": precision,
        # Pixels normalized otherwise (mean/std set by hand) give other features.
        "normalization": _normalization(backbone),
        # What the numbers are, beyond the names above: a backbone kept with its ImageNet head
        # (logits, not features) has the same name, weights and pooling.
        "feature_dim": int(backbone.feature_dim),
    }


def extract_features(
    videos: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    backbone: str | torch.nn.Module = "efficientnet_lite0",
    weights: Any = None,
    pooling: str = "avg",
    layer: str = "last",
    image_size: int | None = None,
    sampling: SamplingSpec | None = None,
    resize: str = "short_side_center_crop",
    batch_size: int | None = None,
    chunk_frames: int = 64,
    num_workers: int | None = None,
    device: str | torch.device = "auto",
    amp: bool = False,
    channels_last: bool | None = None,
    compile: bool = False,
    backend: str = "auto",
    file_timeout: float | None = 300.0,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    tune_allocator: bool = True,
) -> ExtractResult:
    """Extract per-frame features of ``videos`` into ``out_dir``.

    Each video ``V`` goes to ``cache_path(out_dir, V relative to root)`` holding
    ``features`` ``[T, D]`` float16 and ``frame_indices`` ``[T]``; without ``root`` (and
    for a video outside it) to ``out_dir/__outside__/<absolute path of V>.safetensors``.
    :func:`feature_path` says where, for :func:`videoact.load_features`. ``backbone`` is a name
    for :func:`videoact.create_backbone` or a ready backbone module. ``shard=(rank,
    world)`` processes every ``world``-th video starting at ``rank`` (distributed runs).
    On the CPU, ``tune_allocator`` calls :func:`keep_freed_memory` (process-wide).
    ``batch_size=None``: :func:`default_batch_size` (64; fewer on a CPU above 224 px).
    ``amp`` runs the backbone in mixed precision where the hardware has it
    (:func:`videoact.device.autocast_dtype`: bf16/fp16 on CUDA, bf16 on a CPU with
    AVX512-BF16 or AMX; float32 elsewhere). The cache records the precision (metadata
    ``precision``), so a float32 run re-extracts bf16 features and the other way round, and
    checkpoints pass it on to live inference. Off by default: measured on an H100, autocast
    features differed from float32 ones by up to 0.63 (8 % of the values by more than 0.02),
    and extraction there was bound by decoding (540 frames/s) far below the bf16 backbone
    (9,100 images/s); on 2 Zen 4 cores bf16 ran the stride-8 backbone at 448 px 1.9x faster.
    Returns what was written, skipped and failed; never raises for a bad video file.
    """
    from .backbones import create_backbone
    from .preprocess import preprocess_frames

    started = time.perf_counter()
    if isinstance(videos, (str, os.PathLike)):  # one path, not a sequence of its characters
        videos = [videos]
    out_dir = Path(out_dir)
    root_path = Path(root) if root is not None else None
    sampling = sampling or SamplingSpec()
    if isinstance(sampling, dict):  # e.g. a checkpoint's feature["sampling"] or a cache's (with "times")
        sampling = SamplingSpec(**{key: value for key, value in sampling.items() if key != "times"})
    elif not isinstance(sampling, SamplingSpec):
        raise TypeError(f"sampling must be a SamplingSpec or a dict of its fields, not {type(sampling).__name__}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral)
                                   or image_size < 1):
        raise ValueError(f"image_size must be a positive integer (pixels), got {image_size!r}")
    from .decode import time_limit

    file_timeout = time_limit(file_timeout, "file_timeout")
    device = resolve_device(device)
    not_a_file(out_dir, "the features (OUT)")  # before the backbone is built: said at once
    if isinstance(backbone, str):
        backbone = create_backbone(backbone, pretrained=True, weights=weights, pooling=pooling, layer=layer)
    if image_size is not None and image_size != backbone.input_size:
        backbone = copy.copy(backbone)  # the caller's module keeps its own input size
        backbone.input_size = int(image_size)
    # Moved, not switched to eval: the run is an eval-mode copy (inference_model), and a
    # caller fine-tuning the module (or a shallow copy's shared layers) keeps its modes.
    backbone = backbone.to(device)
    cuda = device.type == "cuda"
    if channels_last is None:
        channels_last = True  # measured about 2x faster on CPU too (mkldnn prefers NHWC)
    size = int(backbone.input_size)
    if batch_size is None:
        batch_size = default_batch_size(device, size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    amp_dtype = autocast_dtype(device, amp)
    if amp and amp_dtype is None:
        warnings.warn(f"amp: {device} has no native bf16 (a CPU needs AVX512-BF16 or AMX); extracting in float32",
                      VideoactWarning, stacklevel=2)
    settings = extraction_settings(backbone, sampling, resize, precision_name(amp_dtype))

    # Which videos need work. The rest are current and skipped (resume).
    result = ExtractResult(settings=dict(settings))
    rank, world = shard
    # (source, relative name, cache file, size and mtime as they were before decoding: a video
    # replaced while it is decoded then looks changed to the next run, instead of its new
    # stat vouching for old features)
    todo: list[tuple[str, str, Path, dict[str, int]]] = []
    mine: list[Path] = []  # cache files of this shard
    replaced: list[tuple[Path, list[str]]] = []  # existing cache files made otherwise, and why
    queued: dict[Path, str] = {}  # cache file -> the video that fills it
    repeats: list[tuple[str, str]] = []  # (another name of a queued video, that video)
    cache_folders: dict[Path, bool] = {}  # which exist, for features cached under another key
    for i, video in enumerate(videos):
        if i % world != rank:
            continue
        video = Path(video)
        rel = cache_key(video, root_path)
        target = cache_path(out_dir, rel)
        mine.append(target)
        if target in queued:  # the same video again (a symlink to it, a repeated list line): once
            repeats.append((str(video), queued[target]))
            continue
        stale = cache_staleness(target, settings, video)
        if stale == [] or (stale is None and _reuse_under_another_key(out_dir, video, rel, target, settings,
                                                                      cache_folders)):
            result.skipped.append(str(video))
            continue
        try:
            stat = source_stat(video)
        except OSError:  # gone: decoding reports it
            stat = {}
        todo.append((str(video), rel, target, stat))
        queued[target] = str(video)
        if stale:
            replaced.append((target, stale))
    if replaced:  # say so: these may be someone's features made with other settings
        other_settings = [(t, why) for t, why in replaced if why != [VIDEO_CHANGED]]
        target, why = (other_settings or replaced)[0]
        advice = ("; a run still training on them will stop: give each feature setting its own cache folder"
                  if other_settings else "")  # changed videos: nothing to do differently
        warnings.warn(f"{len(replaced)} cached feature file(s) in {out_dir} are out of date and will be "
                      f"replaced ({target.name}: {'; '.join(why)}){advice}", VideoactWarning, stacklevel=2)
    if todo:  # a cache that is up to date may be read-only: checked only when there is work
        writable_folder(out_dir, "the features (OUT)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # With several ranks (maybe on other machines, where our pid check means nothing)
    # only this shard's leftovers are ours to remove.
    _remove_dead_temporaries(out_dir, mine if world > 1 else None)

    if todo:
        if device.type == "cpu" and tune_allocator:
            keep_freed_memory()
        run_backbone = inference_model(backbone, device, channels_last=channels_last, compile=compile)

    journal = _DecodingJournal(out_dir)
    # Videos open in earlier runs here that died (a decoder crash in this process):
    # read alone, in a worker process, before the rest.
    dead_runs = _DecodingJournal.left_by_dead_runs(out_dir)
    died_in = {video: pid for _, pid, videos in dead_runs for video in videos}
    suspects = {i: f"the run of pid {died_in[t[0]]} died while reading it" for i, t in enumerate(todo)
                if t[0] in died_in}

    def make_loader(paths: list[str], workers: int | None) -> DataLoader:
        loader = decode_loader(paths, sampling, chunk_frames=chunk_frames, backend=backend, file_timeout=file_timeout,
                               num_workers=num_workers if workers is None else workers, pin_memory=cuda)
        if not loader.num_workers:
            loader.dataset.journal = journal
        return loader

    writer = _Writer()
    pending: dict[int, dict[str, Any]] = {}
    queued: list[tuple[int, torch.Tensor]] = []  # (video, preprocessed frames [t, 3, S, S]) not yet run
    queued_frames = 0
    broken: set[int] = set()  # videos that failed after some chunks were already queued
    bar = _progress_bar(len(todo), progress and bool(todo))  # no "0video" bar when the cache is current
    stage = defaultdict(float)
    ready = None  # CUDA event: the features copied to the host so far have landed
    processed = 0  # frames through the backbone, failed videos' too (the progress bar's rate)
    frames_of: dict[str, int] = {}  # source -> frames, for result.frames of the videos written

    def finish(video: int) -> None:
        state = pending.pop(video)
        source, rel, target, stat = todo[video]
        metadata = dict(settings)
        metadata.update(stat)
        metadata.update(num_frames=state["num_frames"], fps=state["fps"], decoder=state["backend"],
                        relative_path=rel)
        writer.put(source, target, state["features"], torch.cat(state["indices"]), metadata, ready,
                   backbone.feature_dim)
        result.written.append(source)
        frames_of[source] = state["done"]
        bar.update(1)

    def run_batch(parts: list[tuple[int, torch.Tensor]]) -> None:
        """One backbone call on exactly ``batch_size`` frames: the last call of a run is
        padded with copies of its last frame. Libraries choose kernels by shape (oneDNN
        with one thread, measured: batches of 2 and 8 give other bits than 64, batches
        of 16 or more the same; cuDNN chooses algorithms by shape), so only a fixed shape
        makes a frame's features independent of which videos share its batch. Costs at
        most ``batch_size - 1`` frames of compute per run; compiled code needs one shape too."""
        nonlocal ready, processed
        t0 = time.perf_counter()
        x = torch.cat([frames for _, frames in parts])
        n = len(x)
        if n < batch_size:
            x = torch.cat([x, x[-1:].expand(batch_size - n, *x.shape[1:])])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            feats = run_backbone(x)[:n]
        if cuda:
            # float16 is what the cache stores: half the bytes over the bus, same values.
            host = torch.empty(feats.shape, dtype=torch.float16, pin_memory=True)
            host.copy_(feats.to(torch.float16), non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            feats = host
        else:
            feats = feats.float()
        offset = 0
        for video, frames in parts:
            part = feats[offset:offset + len(frames)]
            offset += len(frames)
            if video in broken:
                continue
            state = pending[video]
            state["features"].append(part)
            state["done"] += len(part)
            if state["last_seen"] and state["done"] == state["queued"]:
                finish(video)
        processed += n
        stage["backbone"] += time.perf_counter() - t0
        bar.set_postfix_str(f"{processed / max(time.perf_counter() - started, 1e-9):.1f} frames/s")

    def flush(final: bool = False) -> None:
        """Run every full batch queued (and, at the end, the rest), splitting chunks as needed."""
        nonlocal queued_frames
        while queued_frames >= batch_size or (final and queued_frames):
            parts, take = [], min(batch_size, queued_frames)
            while take:
                video, frames = queued[0]
                if len(frames) <= take:
                    parts.append(queued.pop(0))
                    take -= len(frames)
                else:
                    parts.append((video, frames[:take]))
                    queued[0] = (video, frames[take:])
                    take = 0
            queued_frames -= sum(len(f) for _, f in parts)
            run_batch(parts)

    batches = stopper = None
    try:
        t_prev, first = started, True
        ended = 0  # videos whose last chunk or error has arrived
        batches = _LoaderSurvivingCrashes([t[0] for t in todo], make_loader, suspects)
        for item in batches:
            now = time.perf_counter()
            stage["startup" if first else "wait"] += now - t_prev
            first = False
            video = item["video"]
            if item.get("restart"):  # a decode worker died: this video is read again from its start
                pending.pop(video, None)
                queued_frames -= sum(len(frames) for v, frames in queued if v == video)
                queued[:] = [(v, frames) for v, frames in queued if v != video]
                t_prev = time.perf_counter()
                continue
            if "error" in item:
                pending.pop(video, None)
                broken.add(video)
                result.failed.append(Failure(todo[video][0], item["error"]))
                bar.update(1)
                ended += 1
                if ended == len(todo):
                    break
                t_prev = time.perf_counter()
                continue
            state = pending.setdefault(video, {"features": [], "indices": [], "queued": 0, "done": 0})
            state["last_seen"] = item["last"]
            state.update(fps=item["fps"], num_frames=item["num_frames"], backend=item["backend"])
            state["indices"].append(item["indices"])
            frames = preprocess_frames(item["frames"], size, backbone.mean, backbone.std,
                                       device=device, resize=resize, channels_last=channels_last)
            state["queued"] += len(frames)
            queued.append((video, frames))
            queued_frames += len(frames)
            stage["preprocess"] += time.perf_counter() - now
            flush()
            ended += bool(item["last"])
            if ended == len(todo):
                break  # all there: do not wait for the loader's end-of-data to run the last batch
            t_prev = time.perf_counter()
        # Let the worker processes be stopped and collected (0.2 s for two) while the last
        # batch runs and the writer finishes.
        stopper = threading.Thread(target=batches.shutdown, name="videoact-loader-shutdown", daemon=True)
        stopper.start()
        flush(final=True)
    finally:
        if stopper is None and batches is not None:
            # An error or Ctrl-C: the decode workers end now, not when the iterator is
            # collected (an interactive session keeps it, with the traceback, for ever).
            batches.shutdown()
            batches.release()
        journal.close()  # an interrupted run's open videos did not kill it
        t_written = time.perf_counter()
        bar.close()
        for source, message in writer.close():
            result.written.remove(source)
            result.failed.append(Failure(source, message))
        result.frames = sum(frames_of[source] for source in result.written)
        stage["write"] = time.perf_counter() - t_written
    # A dead run's journal has served once every video it names has been dealt with here.
    dealt_with = {t[0] for t in todo} | set(result.skipped)
    for path, _, videos in dead_runs:
        if set(videos) <= dealt_with:
            for leftover in (path, path.with_suffix(".lock")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
    t_stop = time.perf_counter()
    stopper.join()
    batches.release()  # the workers are gone (their deaths no longer watched): torch's handler back
    stage["teardown"] = time.perf_counter() - t_stop
    result.stage_seconds = dict(stage)

    # Videos whose decode failed half-way after some chunks: drop partial state.
    for video in list(pending):
        result.failed.append(Failure(todo[video][0], f"{todo[video][0]}: decoding stopped before the end"))
    # Another name of a video shares its outcome: skipped when that video was written, failed with it.
    reasons = {f.path: f.reason for f in result.failed}
    for other, first in repeats:
        if first in reasons:
            result.failed.append(Failure(other, f"{other}: the same file as {first}, which failed: {reasons[first]}"))
        else:
            result.skipped.append(other)
    result.seconds = time.perf_counter() - started
    result.failure_log_error = _write_failures(out_dir, result.failed, shard, [*result.written, *result.skipped],
                                               wrote=bool(todo))
    return result


def _write_failures(out_dir: Path, failures: list[Failure], shard: tuple[int, int], done: list[str],
                    wrote: bool = True) -> str | None:
    """``OUT/failures.jsonl``: one JSON line per video whose latest extraction failed (this
    run's failures, and earlier runs' failures of videos this run did not touch; ``done``:
    the videos this run wrote or found current). Returns why it could not be written (a
    full disk), naming it, else None: raising here, at the end, lost the run's summary and
    its list of failures.

    Under torchrun (a process group whose size is the shard count) rank 0 writes the
    failures of all ranks to that one file. Shards run without a process group each
    write ``failures.rank<R>.jsonl``."""
    from .distributed import all_gather_objects, current

    info = current()
    if shard[1] > 1 and info.enabled and (info.rank, info.world_size) == tuple(shard):
        failures = [f for part in all_gather_objects(failures) for f in part]
        done = [v for part in all_gather_objects(done) for v in part]
        wrote = any(all_gather_objects(wrote))
        if not info.is_main:
            return None
        shard = (0, 1)
    name = FAILURES_FILE if shard[1] == 1 else f"failures.rank{shard[0]}.jsonl"
    try:
        update_failure_log(out_dir / name, "path", [asdict(f) for f in failures], done, optional=not wrote)
    except OSError as exc:
        return f"{out_dir / name}: could not be written ({error_text(exc)})"
    return None


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="video", desc="extract", dynamic_ncols=True)
