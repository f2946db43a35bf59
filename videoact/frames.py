"""Decode videos into JPEG frame folders (``img_00001.jpg, ...`` + ``meta.json``).

A video's folder is written under a temporary hidden name next to its final place
and renamed when complete, so a folder that exists under its final name is complete:
a rerun skips it (if its source file and the options are unchanged) and redoes any
video whose folder is missing, half-written (a leftover temporary) or outdated.
``open_video(folder)`` reads a frame folder back like a video; ``meta.json`` keeps
the source frame ``indices`` and ``timestamps`` of each written frame.

Layout: ``OUT/<path of the video relative to SRC, without extension>/img_00001.jpg``.
"""
from __future__ import annotations

import concurrent.futures as cf
import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .atomic import (atomic_write_text, not_a_file, remove_dead_temporaries, temporary_path, temporary_prefix,
                     update_failure_log, writable_folder)
from .decode import (FRAME_NAME, META_NAME, VIDEO_EXTENSIONS, VideoDecodeError, VideoReader, heartbeat, limit_threads,
                     list_videos, open_video, time_limit)
from .sampling import timestamp_indices
from .spawn import main_script_hidden

__all__ = [
    "FramesResult",
    "DecodeReport",
    "decode_to_frames",
    "decode_folder",
    "frame_folder_for",
    "is_complete",
    "FAILURES_NAME",
]

FORMAT = "videoact-frames/1"
FAILURES_NAME = "failures.jsonl"


@dataclass
class FramesResult:
    """Outcome for one video: ``status`` is "decoded", "skipped" or "failed"."""

    video: str
    out_dir: str
    status: str
    num_frames: int = 0
    error: str | None = None


@dataclass
class DecodeReport:
    """Outcome of :func:`decode_folder` (one :class:`FramesResult` per video)."""

    results: list[FramesResult] = field(default_factory=list)

    def _with(self, status: str) -> list[FramesResult]:
        return [r for r in self.results if r.status == status]

    @property
    def decoded(self) -> list[FramesResult]:
        return self._with("decoded")

    @property
    def skipped(self) -> list[FramesResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FramesResult]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        return not self.failed


def frame_folder_for(video: str | os.PathLike, src_root: str | os.PathLike, out_root: str | os.PathLike) -> Path:
    """``OUT/<video relative to SRC without extension>``."""
    rel = Path(video).relative_to(src_root)
    return Path(out_root) / rel.with_suffix("")


def _params(fps: float | None, short_side: int | None, quality: int, backend: str = "auto") -> dict[str, Any]:
    """The options a folder is written with: a rerun with other options redoes it. An explicit
    backend is one of them (decord and OpenCV can give other frames: two video streams, a
    damaged file; before, a rerun with another ``--backend`` skipped every folder); "auto"
    is left out, so that folders written before it counted stay current."""
    params = {"fps": None if fps is None else float(fps), "short_side": short_side, "quality": int(quality)}
    if backend != "auto":
        params["backend"] = backend
    return params


def _validate(fps: float | None, short_side: int | None, quality: int) -> None:
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if short_side is not None and short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")


def _source_stat(video: str | os.PathLike) -> dict[str, int]:
    try:
        st = os.stat(video)
    except FileNotFoundError:  # a dangling symlink, a file gone: said as the other commands say it
        raise VideoDecodeError(os.fspath(video), "file not found") from None
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def is_complete(
    out_dir: str | os.PathLike,
    video: str | os.PathLike | None = None,
    params: dict[str, Any] | None = None,
) -> bool:
    """True when ``out_dir`` is a finished frame folder (for ``video`` and ``params``,
    when given: same source size and mtime, same options)."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / META_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return False
    n = meta.get("num_frames")
    if not isinstance(n, int) or n <= 0 or not (out_dir / FRAME_NAME.format(n)).exists():
        return False
    if params is not None and meta.get("params") != params:
        return False
    if video is not None:
        try:
            current = _source_stat(video)
        except OSError:
            return False
        if any(meta.get(k) != v for k, v in current.items()):
            return False
    return True


def _resize_short_side(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """Resize ``[H, W, 3]`` so that ``min(H, W) == short_side`` (aspect kept)."""
    import cv2

    if not short_side:
        return frame
    h, w = frame.shape[:2]
    if min(h, w) == short_side:
        return frame
    scale = short_side / min(h, w)
    size = (short_side, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), short_side)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR  # AREA: no aliasing when shrinking
    return cv2.resize(frame, size, interpolation=interp)


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete leftovers of killed runs for this folder (never another live process's)."""
    remove_dead_temporaries(out_dir.parent, temporary_prefix(out_dir), own=True)


def decode_to_frames(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fps: float | None = None,
    short_side: int | None = None,
    quality: int = 95,
    backend: str = "auto",
    num_threads: int = 1,
    overwrite: bool = False,
    progress: Callable[[], None] | None = None,
) -> FramesResult:
    """Decode one video into ``out_dir/img_00001.jpg ...`` plus ``meta.json``.

    Args:
        fps: frames per second to keep (chosen by real timestamps, so variable-rate
            video is sampled evenly in time); ``None`` keeps every frame.
        short_side: resize so the shorter side has this many pixels; ``None`` keeps size.
        quality: JPEG quality 1..100.
        overwrite: redo even when a complete, current folder exists.
        progress: called after the video is opened, at each frame the reader decodes to
            count the frames or check its seeks (:func:`~videoact.decode.heartbeat`), and
            after each frame is written (the heartbeat of :func:`decode_folder`'s per-video
            time limit).

    Returns a :class:`FramesResult` ("decoded" or "skipped"). Raises
    :class:`~videoact.decode.VideoDecodeError` when the video cannot be decoded;
    nothing is left under ``out_dir`` then.
    """
    import cv2

    _validate(fps, short_side, quality)
    video, out_dir = Path(video), Path(out_dir)
    params = _params(fps, short_side, quality, backend)
    if not overwrite and is_complete(out_dir, video, params):
        meta = json.loads((out_dir / META_NAME).read_text())
        return FramesResult(str(video), str(out_dir), "skipped", int(meta["num_frames"]))

    _check_replaceable(out_dir)  # before hours of decoding, and again at the commit
    _remove_stale_temporaries(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(out_dir)
    tmp.mkdir()
    try:
        stat = _source_stat(video)
        # The heartbeat goes on during the scans made before the first frame (a file whose
        # frames must be counted), which take as long as decoding it all.
        with heartbeat(progress), open_video(video, backend=backend, num_threads=num_threads) as reader:
            if progress is not None:
                progress()
            jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
            written, times, size = [], [], (0, 0)
            for k, (index, seconds, frame) in enumerate(_frames(reader, fps)):
                frame = _resize_short_side(frame, short_side)
                path = tmp / FRAME_NAME.format(k + 1)
                if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), jpeg):
                    raise OSError(f"{path}: cannot write JPEG")
                written.append(index)
                times.append(seconds)
                if progress is not None:
                    progress()
                size = (frame.shape[1], frame.shape[0])
            source_fps = float(reader.fps)
            used_backend = reader.backend
            fallback = reader.fallback_reason
        if not written:
            raise OSError(f"{video}: no frames written")
        meta = {
            "format": FORMAT,
            "source": os.path.abspath(video),
            **stat,
            "backend": used_backend,
            "fallback_reason": fallback,
            "source_fps": source_fps,
            "fps": float(fps) if fps and fps < source_fps else source_fps,
            "num_frames": len(written),
            "width": size[0],
            "height": size[1],
            "params": params,
            "indices": written,
            "timestamps": [round(t, 6) for t in times],
        }
        atomic_write_text(tmp / META_NAME, json.dumps(meta, indent=1))
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FramesResult(str(video), str(out_dir), "decoded", len(written))


def _frames(reader: VideoReader, fps: float | None) -> Iterator[tuple[int, float, np.ndarray]]:
    """The frames to write: all that decode, or those at ``fps`` among them.

    Every frame: ``iter_frames(None)`` means "all that decode", so when decord fails
    part-way and OpenCV decodes fewer frames, the folder holds those. At ``fps`` the
    frames are chosen from decord's count, which OpenCV may not reach after such a
    fallback: the rest are then chosen anew from the frames OpenCV decodes (before, the
    video failed, ``OpenCV decodes only 22 frames, frame 55 was requested``, where
    decoding every frame wrote those 22)."""
    if not fps:
        yield from reader.iter_frames(None)
        return
    backend = reader.backend
    done = -1
    try:
        for item in reader.iter_frames(timestamp_indices(reader.timestamps(), fps)):
            done = item[0]
            yield item
        return
    except VideoDecodeError:
        if reader.backend == backend:  # no fallback happened: a real failure
            raise
    yield from reader.iter_frames([i for i in timestamp_indices(reader.timestamps(), fps) if i > done])


def _check_replaceable(out_dir: Path) -> None:
    """Only a frame folder of ours (its ``meta.json``), or an empty folder, is ever replaced:
    with OUT inside the source tree, ``walk.mp4`` -> ``OUT/walk`` may be the user's folder
    of videos."""
    if not os.path.lexists(out_dir):
        return
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise FileExistsError(f"{out_dir}: exists and is not a frame folder; left as it is")
    try:
        meta = json.loads((out_dir / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT) and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: a folder that decode-frames did not write (no {META_NAME} of its "
                              "own) is there; left as it is: choose another output folder")


def _commit(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temporary folder onto ``out_dir`` (replacing an old one).

    Another run writing the same folder at the same moment (two decode-frames into one
    OUT) can get in between these steps: a rename then fails (the folder appeared, or
    went), and is tried again; the last writer's folder stays (both hold the same frames).
    Before, the video was reported failed while a complete folder was there."""
    for attempt in range(5):
        try:
            _check_replaceable(out_dir)
            if out_dir.exists():
                trash = temporary_path(out_dir)
                os.rename(out_dir, trash)
                os.rename(tmp, out_dir)
                _remove_old_copy(trash, out_dir)
            else:
                os.rename(tmp, out_dir)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST) or attempt == 4 or not tmp.is_dir():
                raise


def _remove_old_copy(trash: Path, out_dir: Path) -> None:
    """Delete the replaced frame folder ``trash``, made writable first where it is read-only
    (``chmod -R a-w``): ``rmtree(ignore_errors=True)`` left such a copy behind under its
    hidden name, a copy of every frame at each rerun, without a word. One that cannot be
    removed even so (another owner's) is reported, naming it."""
    try:
        shutil.rmtree(trash)
        return
    except OSError:
        pass
    for dirpath, dirnames, _files in os.walk(trash):  # top-down: a sub-folder is opened up before it is listed
        for path in [dirpath, *(os.path.join(dirpath, d) for d in dirnames)]:
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
    try:
        shutil.rmtree(trash)
    except OSError as exc:
        raise OSError(f"{out_dir}: written, but its old copy {trash} cannot be removed "
                      f"({exc.strerror or exc}): delete it by hand") from None


def _job(video: str, out_dir: str, options: dict[str, Any]) -> FramesResult:
    """One video, errors returned rather than raised (runs in a worker process)."""
    try:
        return decode_to_frames(video, out_dir, **options)
    except Exception as e:  # report per file; the other videos go on
        msg = str(e)
        if video not in msg:
            msg = f"{video}: {type(e).__name__}: {msg}"
        return FramesResult(video, out_dir, "failed", error=msg)


def _killable_job(item: tuple[str, str], beat: Callable[[], None], **options: Any) -> FramesResult:
    """One video in a :func:`videoact.health.run_killable` worker; ``beat`` on progress."""
    video, out_dir = item
    return _job(video, out_dir, {**options, "progress": beat})


def _init_worker() -> None:
    limit_threads(1)
    # Ctrl-C goes to the parent, which stops the pool; workers should not print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fps: float | None = None,
    short_side: int | None = None,
    quality: int = 95,
    workers: int = 1,
    backend: str = "auto",
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    progress: bool = False,
    timeout: float | None = None,
) -> DecodeReport:
    """Decode every video under ``src`` (recursive) into frame folders under ``out``.

    Videos run in ``workers`` processes (forkserver/spawn; ``workers <= 1`` runs in
    this process). Complete, current folders are skipped, so an interrupted run can
    simply be repeated. A video that fails does not stop the others: failures are
    returned in the report and written to ``out/failures.jsonl``, which keeps earlier
    runs' failures of videos this run did not handle (removed when none are left).

    ``timeout``: seconds a video may go without progress (opened, one more frame counted
    or written; ``None`` or 0: no limit) before its worker process is killed and the video
    reported as failed; a decoder stuck inside C code cannot stop the run. With a
    ``timeout`` videos always run in worker processes (at least one).
    """
    src, out = Path(src), Path(out)
    videos = list_videos(src, extensions)
    root = src.parent if src.is_file() else src
    options = {"fps": fps, "short_side": short_side, "quality": quality, "backend": backend}
    _validate(fps, short_side, quality)  # once here, not once per video
    timeout = time_limit(timeout, infinite_is_none=False)
    if not videos:
        return DecodeReport()
    not_a_file(out, "the frame folders (OUT)")

    report = DecodeReport()
    jobs: list[tuple[str, str]] = []
    owner: dict[Path, Path] = {}
    inside: dict[Path, Path] = {}  # each folder that holds a frame folder -> that folder
    for v in videos:
        target = frame_folder_for(v, root, out)
        clash = None
        if target in owner:  # clip.mp4 and clip.avi would share OUT/clip
            clash = f"output folder {target} is already used by {owner[target]}"
        elif target in inside:  # x.mp4 -> OUT/x holds OUT/x/y of x/y.mp4
            clash = (f"output folder {target} holds {inside[target]}, the frame folder of "
                     f"{owner[inside[target]]} (rewriting one would delete the other)")
        else:
            outer = next((a for a in target.parents if a in owner), None)
            if outer is not None:
                clash = (f"output folder {target} lies inside {outer}, the frame folder of {owner[outer]} "
                         "(rewriting one would delete the other)")
        if clash:
            report.results.append(FramesResult(str(v), str(target), "failed", error=f"{v}: {clash}"))
            continue
        owner[target] = v
        for a in target.parents:
            inside.setdefault(a, target)
        jobs.append((str(v), str(target)))
    params = _params(fps, short_side, quality, backend)
    work = any(not is_complete(Path(t), v, params) for v, t in jobs)
    if work:  # complete folders may be read-only: checked only when there is something to write
        writable_folder(out, "the frame folders (OUT)")  # said at once, not as a traceback at the end

    bar = _progress(len(jobs), progress)
    try:
        if timeout:
            from .health import run_killable

            def done(index: int, result: Any, failure: str | None, _seconds: float) -> None:
                v, t = jobs[index]
                if failure is not None:
                    result = FramesResult(v, t, "failed", error=f"{v}: {failure}")
                    _remove_stale_temporaries(Path(t))  # the killed worker's half-written folder
                report.results.append(result)
                bar.update(1)

            run_killable(_killable_job, jobs, workers=max(1, workers), timeout=timeout, options=options,
                         on_done=done)
        elif workers <= 1:
            for v, t in jobs:
                report.results.append(_job(v, t, options))
                bar.update(1)
        else:
            # spawn, not fork: the parent may hold threads (torch, decoders) that fork would copy.
            with main_script_hidden():  # workers start during the submits
                pool = cf.ProcessPoolExecutor(
                    max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
                )
                futures = {pool.submit(_job, v, t, options): (v, t) for v, t in jobs}
            with pool:
                try:
                    for fut in cf.as_completed(futures):
                        v, t = futures[fut]
                        try:
                            report.results.append(fut.result())
                        except cf.process.BrokenProcessPool:
                            report.results.append(FramesResult(
                                v, t, "failed",
                                error=f"{v}: a worker process died (crash or out of memory) "
                                "before this video was done; rerun to retry it",
                            ))
                        bar.update(1)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    except BaseException:
        # Interrupted (Ctrl-C): the workers have been stopped, some killed mid-video; their
        # half-written folders go now, not at the next run that happens to decode that video.
        for _v, t in jobs:
            _remove_stale_temporaries(Path(t))
        raise
    finally:
        bar.close()

    order = {str(v): i for i, v in enumerate(videos)}
    report.results.sort(key=lambda r: order.get(r.video, 0))
    # Earlier runs' failures of videos this run did not touch stay listed (another SRC, same OUT).
    update_failure_log(out / FAILURES_NAME, "video", [{"video": r.video, "error": r.error} for r in report.failed],
                       [r.video for r in report.results], optional=not work and not report.failed)
    return report


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="video", file=sys.stderr, dynamic_ncols=True)
