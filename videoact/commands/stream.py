"""``videoact stream CHECKPOINT --source SRC [--no-window] [--record OUT.mp4] [--realtime] ...``

Live recognition on a webcam (``--source 0``), an RTSP/HTTP stream or a video file. The
window shows the video at the source rate with the top-k labels, the prediction rate,
the dropped-frame count and the latency drawn on it; ``q`` (or Esc, or closing the
window) or Ctrl-C stops it cleanly. ``--no-window`` prints one JSON line per prediction
(timestamp, label, top-k, latency, dropped). A file source ends at its end (exit 0).
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sys

from ..atomic import clobber_error
from . import positive_int, positive_number, probability, seconds_limit, stop_signals_as_ctrl_c, tune_cpu_allocator


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt from videoact train")
    p.add_argument("--source", default="0",
                   help="camera index (0), video file, or rtsp:// / http:// URL (default: camera 0)")
    p.add_argument("--no-window", action="store_true",
                   help="no window: print one JSON line per prediction on stdout")
    p.add_argument("--record", metavar="OUT.mp4",
                   help="save the annotated video (finalised on exit); a camera, URL or --realtime file "
                        "is recorded in real time, a file read as fast as possible frame by frame")
    p.add_argument("--realtime", action="store_true",
                   help="play a video file at its own frame rate (default: as fast as possible)")
    p.add_argument("--feature-rate", type=positive_number, metavar="HZ",
                   help="frames per second that get CNN features (default: 8, or the checkpoint's fps "
                        "sampling rate); the model sees num_segments / HZ seconds")
    p.add_argument("--predict-rate", type=positive_number, metavar="HZ",
                   help="temporal-model runs per second (default: after every new feature)")
    p.add_argument("--ema", type=float, default=0.5,
                   help="smoothing: weight of the past in [0, 1), 0 = off (default 0.5)")
    p.add_argument("--threshold", type=probability, default=0.5,
                   help="below this smoothed probability: no confident action (default 0.5)")
    p.add_argument("--top-k", type=positive_int, default=3, help="labels per prediction (default 3)")
    p.add_argument("--max-seconds", type=positive_number, metavar="S",
                   help="stop after S seconds of source time (a lost stream: S seconds after the start)")
    p.add_argument("--open-timeout", type=positive_number, default=10.0, metavar="S",
                   help="give up opening a URL or camera after S seconds (default 10)")
    p.add_argument("--read-timeout", type=positive_number, default=5.0, metavar="S",
                   help="a URL that sends nothing for S seconds is lost (default 5)")
    p.add_argument("--give-up-after", type=positive_number, metavar="S",
                   help="stop (exit 1) when a lost camera or URL has given no frame for S seconds "
                        "(default: keep reconnecting until stopped)")
    p.add_argument("--no-reconnect", action="store_true",
                   help="end when a camera or URL stream drops, instead of reconnecting")
    p.add_argument("--file-timeout", type=seconds_limit, default=300.0, metavar="S",
                   help="give up opening and checking a video file after S seconds (default 300; 0 = no limit)")
    p.add_argument("--weights", metavar="FILE",
                   help="backbone weights file, where the one the checkpoint was trained with is not at its "
                        "recorded path or beside the checkpoint")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="torch CPU threads for the CNN (default: torch's choice; on a busy 2-core machine "
                        "1 is often faster for one frame at a time)")


class _OutputError(Exception):
    """Writing an output of the run (``--record``, stdout) failed: said as such, not as a
    problem of the source."""


class _TerminalGone(Exception):
    """stdout is a terminal that has hung up (EIO): the run stops as on a hang-up signal."""


def _emit(result, terminal: bool) -> None:  # noqa: ANN001
    """One JSON line on stdout. EIO on a ``terminal`` (stdout was one at the start): it has
    gone (an SSH session closed, where no SIGHUP reached this process), a stop as Ctrl-C.
    Another failure (a full disk under `> results.jsonl`, EIO of a failing disk) is an
    error of stdout."""
    try:
        print(json.dumps(result.to_dict()), flush=True)
    except BrokenPipeError:
        raise  # `| head`: for videoact's main
    except OSError as exc:
        if exc.errno == errno.EIO and terminal:
            raise _TerminalGone from exc
        raise _OutputError(f"cannot write the results to stdout: {exc.strerror or exc}") from exc


def _err(message: str) -> None:
    # A terminal that has hung up (SSH session closed) fails every write with EIO: the
    # run still has to finalise its recording, so a message that cannot be shown is dropped.
    with contextlib.suppress(OSError):
        print(f"videoact stream: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # Asked first, before the imports and the model's loading: a terminal that has hung up
    # is no tty any more, and its EIO must still read as the hang-up it is.
    try:
        terminal = sys.stdout.isatty()
    except (OSError, ValueError, AttributeError):  # AttributeError: no stdout at all (None)
        terminal = False
    from ..checkpoint import CheckpointError
    from ..inference import VideoClassifier
    from ..overlay import AtomicVideoWriter, draw_stream_overlay, video_writer_error, window_support
    from ..sources import DEFAULT_LIVE_FPS, SourceError
    from ..stream import RateMeter, StreamClassifier, StreamEngine

    # --record on the source file (or the checkpoint) would replace it: refuse first.
    # A camera index or a URL is no file here and cannot be overwritten.
    sources = [args.checkpoint] + ([args.source] if os.path.exists(args.source) else [])
    clash = clobber_error([("--record", args.record)], sources)
    if clash is None and args.record:  # before the model loads and the source opens
        why = video_writer_error(args.record)
        clash = f"--record {args.record}: {why}" if why else None
    if clash:
        _err(clash)
        return 2
    show = not args.no_window
    if show:
        ok, why = window_support()
        if not ok:
            _err(f"cannot open a window: {why}. Running headless instead (JSON lines on stdout); "
                 "pass --no-window to skip this check.")
            show = False
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    tune_cpu_allocator(args.device)
    try:
        classifier = VideoClassifier.from_checkpoint(args.checkpoint, device=args.device, weights=args.weights)
        sc = StreamClassifier(classifier, feature_rate=args.feature_rate, predict_rate=args.predict_rate,
                              ema=args.ema, threshold=args.threshold, top_k=args.top_k)
        engine = StreamEngine(args.source, sc, realtime=args.realtime, display=show or bool(args.record),
                              max_seconds=args.max_seconds, log=_err, open_timeout=args.open_timeout,
                              read_timeout=args.read_timeout, reconnect=not args.no_reconnect,
                              give_up_after=args.give_up_after, file_timeout=args.file_timeout or None)
        engine.start()
    except (CheckpointError, SourceError, ValueError) as exc:
        _err(str(exc))
        return 2
    # A source slower than --feature-rate gives every frame: the window spans more time.
    rate, source_fps = sc.feature_rate, engine.source.fps
    if source_fps and 0 < source_fps < rate:
        given = f"--feature-rate {rate:g}" if args.feature_rate is not None else f"the feature rate, {rate:g}/s,"
        _err(f"{given} is above the {source_fps:g} frames/s of {engine.source.name}: every frame is used")
        rate = source_fps
    window_seconds = sc.num_segments / rate
    _err(f"{engine.source.name}: window {window_seconds:.2f} s ({sc.num_segments} frames at "
         f"{rate:g}/s); {'q or Ctrl-C to stop' if show else 'Ctrl-C to stop'}")

    # SIGTERM, and SIGHUP (the terminal or SSH session closed), stop as cleanly as Ctrl-C
    # (threads joined, recording finalised).
    previous = stop_signals_as_ctrl_c()
    # A live source's gap of more than 2 s is a lost stream, cut to one frame; a file's is
    # a pause in the video (a screen or motion-triggered recording), kept.
    recorder = AtomicVideoWriter(args.record, engine.source.fps or DEFAULT_LIVE_FPS,
                                 max_gap=2.0 if engine.source.live else math.inf) if args.record else None
    window = f"videoact - {engine.source.name}"
    status = 0
    interrupted = False
    whole = False  # the loop ran to the source's end (or --max-seconds): no stop, no error
    try:
        if show:
            import cv2

            cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        if not show and recorder is None:
            for result in engine.results():
                _emit(result, terminal)
        else:
            shown = RateMeter()
            waiting = f"collecting {sc.num_segments} frames ({window_seconds:.1f} s)..."
            while True:
                frame = engine.next_frame(timeout=0.05)
                for result in engine.poll():
                    if not show:
                        _emit(result, terminal)
                if frame is not None:
                    shown.tick()
                    image = draw_stream_overlay(frame.image, engine.latest, display_fps=shown.rate,
                                                dropped=engine.dropped, top_k=args.top_k, waiting=waiting,
                                                bgr_output=True)
                    if recorder is not None:
                        # On the source's clock: a live source's recording plays in real time
                        # even when this loop takes fewer frames than the source gives, and a
                        # file's keeps its timing where its frame rate varies (one frame per
                        # source frame made a file with a 3 s pause 3 s short).
                        try:
                            recorder.write(image, bgr=True, timestamp=frame.timestamp)
                        except OSError as exc:  # e.g. a full disk: the recording's problem, not the source's
                            raise _OutputError(f"--record {args.record}: {exc.strerror or exc}") from exc
                    if show:
                        cv2.imshow(window, image)
                if show:
                    key = cv2.waitKey(1) & 0xFF
                    if key in (ord("q"), ord("Q"), 27):
                        interrupted = True  # stopped by the user, as Ctrl-C
                        break
                    if cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1:
                        interrupted = True  # closed with the mouse
                        break
                if frame is None and engine.finished:
                    for result in engine.poll():
                        if not show:
                            _emit(result, terminal)
                    break
        whole = not interrupted
    except (KeyboardInterrupt, _TerminalGone):
        interrupted = True
    except BrokenPipeError:  # `videoact stream ... | head`: for videoact's main, which stops quietly
        raise
    except _OutputError as exc:
        _err(str(exc))
        status = 1
    except (SourceError, OSError, RuntimeError, ValueError) as exc:
        # A model's own error ("CUDA out of memory") says nothing of where it happened.
        where = "" if isinstance(exc, SourceError) or engine.source.name in str(exc) else f"{engine.source.name}: "
        _err(f"{where}{exc}")
        status = 1
    finally:
        # A second Ctrl-C (or a SIGTERM) while stopping must not lose the recording.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in previous:  # the stop signals
            signal.signal(sig, signal.SIG_IGN)
        try:
            if recorder is not None:  # first: it needs nothing from the threads, nor a terminal
                # A live session (a camera, a URL, a file played --realtime) cannot be had
                # again: what was recorded is kept however the run ends. A file read as fast
                # as possible can: its copy is kept only whole, so one cut short (Ctrl-C,
                # an error, a reader gone from the pipe) never replaces a complete one.
                whole = whole and status == 0 and not getattr(engine.source, "ended_short", False)
                saved = recorder.close(commit=whole or not engine.lossless)
                if saved is not None:
                    timing = "in real time" if not engine.lossless else "the file's timing"
                    paced = (f", {recorder.repeated} repeated and {recorder.skipped} left out to keep {timing} at "
                             f"{recorder.fps:g} frames/s") if recorder.repeated or recorder.skipped else ""
                    _err(f"recording saved to {saved} ({recorder.frames} frames{paced})")
                elif recorder.frames:
                    kept = f"; the earlier {recorder.path} is unchanged" if recorder.path.exists() else ""
                    _err(f"recording not saved: the run stopped before the end of {engine.source.name}, and a "
                         f"file's recording is kept only whole (--realtime records it as live){kept}")
            if interrupted:
                _err("stopping ...")
            engine.stop()  # up to 5 s when a thread is blocked reading the source
            if show:
                import cv2

                cv2.destroyAllWindows()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    stats = engine.stats()
    dropped_results = (f", {stats['results_dropped']} results not taken in time (oldest dropped)"
                       if stats["results_dropped"] else "")
    _err(f"{'stopped' if interrupted else 'done'}: {stats['frames_captured']} frames, "
         f"{stats['predictions']} predictions, {stats['dropped']} dropped, {stats['reconnects']} reconnects"
         f"{dropped_results}")
    if getattr(engine.source, "ended_short", None) and not interrupted and status == 0:
        status = 1  # a file's transfer cut off midway (said on the log): not a whole run
    if stats["predictions"] == 0 and stats["features"] > 0 and status == 0:
        _err(f"no prediction: the model needs a full window of {sc.num_segments} frames ({window_seconds:.2f} s "
             f"of source at {rate:g} frames/s), and the source gave {stats['features']}; "
             + ("a higher --feature-rate shortens the window" if rate == sc.feature_rate else
                "it has no more frames a second, so the window cannot be shorter"))
    return status
