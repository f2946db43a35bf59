"""``videoact infer CHECKPOINT INPUT... [--top-k K] [--out FILE.json|FILE.csv]``.

With ``--timeline`` each input is a long video classified in sliding windows
(``--window SEC``, ``--stride SEC``) into a timeline and merged action segments
(:mod:`videoact.timeline`); ``--out`` then writes the timelines as JSON (a list with
one object per video, however many there are) or CSV and ``--annotate OUT.mp4`` an
annotated copy of the (single) input video.

Inputs are video files, frame folders (``img_00001.jpg ...``, as ``videoact
decode-frames`` writes them) and folders searched recursively for both. Outputs that
are one of the inputs (or the checkpoint) are refused before any work (exit 2).

Each video's result is printed as soon as it is done; ``--out`` is written at the end,
and after a Ctrl-C too, with what was done and the videos not reached (exit 130).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..atomic import clobber_error
from . import (keep_earlier_output, output_folder_error, positive_int, probability, seconds_limit, stdout_to_devnull,
               tune_cpu_allocator)

OUT_SUFFIXES = (".json", ".csv")  # write_predictions and write_timeline: CSV, or JSON


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt from videoact train")
    p.add_argument("inputs", nargs="+",
                   help="video files, frame folders, or folders of either (searched recursively)")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels per video (default 5)")
    p.add_argument("--num-clips", type=positive_int, default=None,
                   help="clips per video, each shifted within the segments; scores averaged (default 1; not with "
                        "--timeline, whose windows are clips already)")
    p.add_argument("--out", help="write results to a .json or .csv file")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1 ...")
    p.add_argument("--weights", metavar="FILE",
                   help="backbone weights file, where the one the checkpoint was trained with is not at its "
                        "recorded path or beside the checkpoint")
    p.add_argument("--timeout", type=seconds_limit, default=300.0,
                   help="seconds allowed per video before it is reported as failed (default: %(default)s; 0 = none); "
                        "with --timeline, for opening and verifying it (decoding a long video takes as long as it takes)")
    t = p.add_argument_group("long videos (--timeline)")
    t.add_argument("--timeline", action="store_true",
                   help="classify each input in sliding windows: per-window top-k and merged action segments")
    t.add_argument("--window", type=float, metavar="SEC",
                   help="window length in seconds (default 2; the model sees num_segments frames of it)")
    t.add_argument("--stride", type=float, metavar="SEC", help="step between windows in seconds (default: about window/4, on the sampling grid)")
    t.add_argument("--threshold", type=probability, default=None,
                   help="windows whose top probability is below this are 'no confident action' (default 0)")
    t.add_argument("--annotate", metavar="OUT.mp4", help="write a copy of the input video with the timeline drawn on it")


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The videos named by ``inputs`` and, for each folder with none, a failure
    ``(DIR, "no videos found in DIR")``.

    A file (or a name that does not exist) is kept as given: reading it reports what is wrong.
    A video named twice (on its own and in its folder, or in two spellings of one path) is
    classified once, where it is first named."""
    from ..decode import list_videos

    videos: list[Path] = []
    empty: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_videos(path, frame_folders=True)
            if not found:
                empty.append((item, f"no videos found in {item}"))
            videos.extend(found)
        else:
            videos.append(path)
    seen: set[str] = set()
    unique = []
    for video in videos:
        key = os.path.abspath(video)
        if key not in seen:
            seen.add(key)
            unique.append(video)
    return unique, empty


def check_outputs(args: argparse.Namespace, videos: list[Path]) -> str | None:
    """A usage error for ``--out`` / ``--annotate``, or None."""
    if args.out and Path(args.out).suffix.lower() not in OUT_SUFFIXES:
        return (f"--out {args.out}: unsupported file type {Path(args.out).suffix or '(no suffix)'!r}; "
                f"results are written as {' or '.join(OUT_SUFFIXES)}")
    from ..overlay import video_writer_error

    # A frame folder's meta.json is part of that input too.
    protected = [args.checkpoint, *args.inputs, *videos,
                 *(v / "meta.json" for v in videos if v.is_dir())]
    clash = clobber_error([("--out", args.out), ("--annotate", args.annotate)], protected)
    if clash is None and args.out:
        clash = output_folder_error("--out", args.out, "the results")
    if clash is None and args.annotate:  # before the model loads and the timeline is computed
        why = video_writer_error(args.annotate)
        clash = f"--annotate {args.annotate}: {why}" if why else None
    return clash


def check_timeline_args(args: argparse.Namespace) -> str | None:
    """A usage error for the timeline options, or None."""
    # An option that would be ignored is refused: a run that looks as asked and is not.
    if not args.timeline:
        used = [f"--{n}" for n in ("window", "stride", "threshold", "annotate") if getattr(args, n) is not None]
        return f"{', '.join(used)} only {'work' if len(used) > 1 else 'works'} with --timeline" if used else None
    if args.num_clips is not None:
        return "--num-clips does not work with --timeline (each window is one clip; a shorter --stride gives more)"
    for name in ("window", "stride"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            return f"--{name} must be a positive number of seconds, got {value}"
    if args.annotate and len(args.inputs) != 1:
        return "--annotate writes one annotated video: give exactly one input"
    return None


class _Stdout:
    """print(), until the reader of stdout has gone (`| head`) or stdout refuses a write (a
    full disk): then the run goes on in silence when it has files to write (--out,
    --annotate), which are what it is for, and says so at the end. Without them the error
    goes to videoact's main, which ends the run (exit 141 for a gone reader, else 1)."""

    def __init__(self, files_to_write: bool) -> None:
        self.files_to_write = files_to_write
        self.reader_gone = False
        self.error: OSError | None = None  # what a write to stdout raised, other than a gone reader

    def say(self, line: str, flush: bool = False) -> None:
        if self.reader_gone or self.error is not None:
            return
        try:
            print(line, flush=flush)
        except OSError as exc:
            if not self.files_to_write:
                raise
            if isinstance(exc, BrokenPipeError):
                self.reader_gone = True
            else:
                self.error = exc
            stdout_to_devnull()

    def say_all(self, lines: list[str]) -> None:
        """One video's lines, flushed: a reader of a pipe gets each video as it is done."""
        for i, line in enumerate(lines, 1):
            self.say(line, flush=i == len(lines))


def run_timeline(args: argparse.Namespace, classifier, videos: list[Path],
                 failures: list[tuple[str, str]]) -> int:
    """``failures``: ``(input, reason)`` pairs so far; with the videos that fail here they go
    into ``--out`` too. Output failures (``--annotate``, ``--out``) are only reported."""
    from ..decode import VideoDecodeError
    from ..inference import failure_reason
    from ..timeline import annotate_video, classify_timeline, window_settings, write_timeline

    try:  # once, not as the same failure of every video (a --stride longer than the window)
        window_settings(classifier, args.window, args.stride)
    except ValueError as exc:
        print(f"videoact infer: {exc}", file=sys.stderr)
        return 2
    timelines, failures, output_failures = [], list(failures), []
    from tqdm import tqdm

    stdout = _Stdout(files_to_write=bool(args.out or args.annotate))
    say = stdout.say

    failed_before, interrupted = len(failures), False
    try:
        for video in videos:
            # Long files take a while: show sampled frames done (on a terminal only).
            bar = tqdm(desc=Path(video).name, unit="frame", leave=False, disable=not sys.stderr.isatty())

            def progress(frames: int, total: int) -> None:
                bar.total = total
                bar.update(frames - bar.n)

            try:
                tl = classify_timeline(classifier, video, window=args.window, stride=args.stride,
                                       top_k=args.top_k, threshold=args.threshold or 0.0, progress=progress,
                                       file_timeout=args.timeout or None)
            except (VideoDecodeError, OSError, RuntimeError, ValueError) as exc:
                failures.append((str(video), failure_reason(video, exc)))
                continue
            finally:
                bar.close()
            timelines.append(tl)
            windows = (f"{len(tl.windows)} windows of {tl.window:g} s every {tl.stride:g} s"
                       if len(tl.windows) > 1 else f"one window over all of it (--window {tl.window:g} s)")
            lines = [f"{tl.source}  ({tl.duration:.2f} s; {windows}; {tl.frames_processed} frames through the CNN)"]
            lines += [f"  {seg.start:8.2f} - {seg.end:8.2f} s  {seg.label}  ({seg.score:.3f})" for seg in tl.segments]
            lines += [] if tl.segments else ["  no confident action"]
            stdout.say_all(lines)
            if args.annotate:
                # Prints stay out of the try blocks here: a BrokenPipeError from stdout is an
                # OSError too, and is for say() to handle, not a write failure.
                try:
                    out = annotate_video(video, tl, args.annotate, top_k=min(args.top_k, 3))
                except (VideoDecodeError, OSError) as exc:
                    output_failures.append(f"{args.annotate}: {exc}")
                else:
                    say(f"annotated video written to {out}")
    except KeyboardInterrupt:  # what was done is kept: the timelines so far go into --out
        interrupted = True
    done = len(timelines) + len(failures) - failed_before
    unreached = _unreached(videos, done)
    if args.out and not (unreached and keep_earlier_output("infer", "--out", args.out)):  # cut short
        # Always a list (one object per input), and written even when every input
        # failed, as plain infer does: no stale results are left.
        try:
            write_timeline(timelines, Path(args.out), failures + unreached)
        except OSError as exc:  # e.g. a full disk; written atomically, so nothing half-written is left
            output_failures.append(f"{args.out}: cannot write the timeline: {exc.strerror or exc}")
        else:
            say(f"timeline written to {args.out}")
    for _, reason in failures:
        print(f"failed: {reason}", file=sys.stderr)
    for reason in output_failures:
        print(f"failed: {reason}", file=sys.stderr)
    return _status(stdout, interrupted, done, len(videos), bool(failures), bool(output_failures))


def _unreached(videos: list[Path], done: int) -> list[tuple[str, str]]:
    """After a Ctrl-C, ``--out`` still accounts for every input: those not reached, as
    ``(input, reason)`` pairs beside the failures."""
    return [(str(v), f"{v}: not classified (the run was interrupted)") for v in videos[done:]]


def _status(stdout: _Stdout, interrupted: bool, done: int, total: int, failed: bool, output_failed: bool) -> int:
    """The exit status, once every failure has been said."""
    if stdout.error is not None:  # what main says for a stdout that refuses writes
        print(f"videoact infer: cannot write to stdout: {stdout.error.strerror or stdout.error}", file=sys.stderr)
    if interrupted:
        print(f"interrupted after {done} of {total} videos", file=sys.stderr)
        return 130  # as videoact's main reports a Ctrl-C
    if stdout.reader_gone and not output_failed:  # a file that could not be written is the news
        return 141  # as a shell reports a process ended by SIGPIPE (videoact's main does the same)
    return 1 if failed or output_failed or stdout.error is not None else 0


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError
    from ..inference import VideoClassifier, write_predictions

    usage = check_timeline_args(args)
    videos, empty_folders = collect_inputs(args.inputs)
    usage = usage or check_outputs(args, videos)
    if usage is None and videos and args.annotate and len(videos) != 1:
        usage = f"--annotate needs exactly one video, {len(videos)} found"
    if usage:
        print(f"videoact infer: {usage}", file=sys.stderr)
        return 2
    if not videos:  # as `videoact extract` reports it; nothing is written
        print(f"videoact infer: no videos found in {', '.join(args.inputs)}", file=sys.stderr)
        return 1
    tune_cpu_allocator(args.device)
    try:
        classifier = VideoClassifier.from_checkpoint(args.checkpoint, device=args.device, weights=args.weights)
    except (CheckpointError, ValueError) as exc:  # ValueError: a --weights file that does not fit
        print(f"videoact infer: {exc}", file=sys.stderr)
        return 2
    if args.timeline:
        return run_timeline(args, classifier, videos, empty_folders)
    from tqdm import tqdm

    # Each video's labels are printed as soon as they are made (a folder of thousands
    # takes hours); --out is written at the end, and after a Ctrl-C with what was done.
    stdout = _Stdout(files_to_write=bool(args.out))
    results, failures, interrupted = [], [], False
    bar = tqdm(total=len(videos), unit="video", leave=False, disable=len(videos) < 2 or not sys.stderr.isatty())
    try:
        for video, prediction, reason in classifier.predict_each(videos, top_k=args.top_k,
                                                                 num_clips=args.num_clips or 1,
                                                                 file_timeout=args.timeout or None):
            # Recorded first: a Ctrl-C from here on leaves this video counted as done.
            if prediction is None:
                failures.append((video, reason))
            else:
                results.append(prediction)
            bar.update()
            if prediction is not None:
                bar.clear()  # a terminal's progress line, on stderr, is not mixed into the results
                stdout.say_all([prediction.source] + [f"  {prob * 100:6.2f}%  {label}"
                                                      for label, prob in prediction.top])
                bar.refresh()  # drawn again below them
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    done = len(results) + len(failures)
    unreached = _unreached(videos, done)
    failures = empty_folders + failures
    output_failure = None
    if args.out and not (unreached and keep_earlier_output("infer", "--out", args.out)):  # cut short
        try:
            write_predictions(results, args.out, failures + unreached)
        except OSError as exc:  # e.g. a full disk; written atomically, so nothing half-written is left
            output_failure = f"{args.out}: cannot write the results: {exc.strerror or exc}"
        else:  # said outside the try: a BrokenPipeError from stdout is no write failure
            stdout.say(f"results written to {args.out}")
    for _, reason in failures:
        print(f"failed: {reason}", file=sys.stderr)
    if output_failure:
        print(f"failed: {output_failure}", file=sys.stderr)
    return _status(stdout, interrupted, done, len(videos), bool(failures), bool(output_failure))
