"""The ``videoact`` command: one sub-command per tool, each a thin front over the library.

Every sub-command lives in ``videoact/commands/<name>.py`` and defines
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
``tools/<script>.py`` call the same functions.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import threading
from typing import Any, Iterator, Sequence

from .commands import stdout_refuses, stdout_to_devnull
from .version import __version__

# sub-command -> (module in videoact.commands, one-line help)
COMMANDS = {
    "decode-frames": ("decode_frames", "decode a folder of videos into JPEG frame folders"),
    "extract": ("extract", "extract per-frame CNN features into a safetensors cache"),
    "make-synthetic": ("make_synthetic", "write the temporal-order benchmark videos"),
    "train": ("train", "train a temporal model on a video folder or annotation list"),
    "test": ("test", "evaluate a checkpoint: top-1/top-5, per-class metrics, confusion matrix"),
    "infer": ("infer", "classify video files or folders (or a long video as a timeline)"),
    "stream": ("stream", "live recognition on a webcam, network stream or video file"),
    "check": ("check", "health check of videos: a folder, a video or an annotation list"),
    "demo": ("demo", "end-to-end demo on the synthetic temporal-order benchmark"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videoact", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"videoact {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(command_parser=p)  # for main's usage errors
        if only is None or only == name:
            importlib.import_module(f"videoact.commands.{module}").add_arguments(p)
    return parser


@contextlib.contextmanager
def _warnings_as_lines(command: str) -> Iterator[None]:
    """videoact's own warnings (other backbone weights given, a lock the file system refuses)
    as ``videoact CMD: warning: ...`` lines, not Python's ``file:line: UserWarning`` form."""
    import warnings

    from .notices import VideoactWarning

    package = os.path.dirname(os.path.abspath(__file__))
    shown = warnings.showwarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if not os.path.abspath(filename).startswith(package + os.sep):
            return shown(message, category, filename, lineno, file, line)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # the warning after what was printed before it, not inside it
        kind = "" if issubclass(category, VideoactWarning) else f" ({category.__name__})"  # e.g. torch's
        print(f"videoact {command}: warning{kind}: {message}", file=sys.stderr if file is None else file)

    with warnings.catch_warnings():
        # videoact's own, every time, whatever -W / PYTHONWARNINGS say: a data problem said
        # in one run of main() was not said again in the next one in the same process
        # (Python's default filter shows a message once), and -W ignore dropped them all.
        # Other libraries' warnings (torch's) keep Python's filters.
        warnings.filterwarnings("always", category=VideoactWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = shown


class _StdoutLines(logging.Handler):
    """Each record's message as a line on the sys.stdout of the moment (a test's capture, a
    redirection made after start-up)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout)  # errors rise: main reports stdout's


_summary_lock = threading.Lock()
_summary_runs = [0, logging.NOTSET]  # main() calls running, the logger's level before the first
_summary_thread = threading.local()  # whether this thread's main() prints them already


@contextlib.contextmanager
def _summary_lines() -> Iterator[None]:
    """Training's summary lines (``videoact.train`` at INFO: its data, exclusions, resuming)
    on stdout, for this run of main() only and lines of this thread only: main() in two
    threads prints each run's once; a main() inside main() leaves them to the outer one.
    They still reach a program's own logging set-up as well (the logger propagates)."""
    if getattr(_summary_thread, "printing", False):
        yield
        return
    logger = logging.getLogger("videoact.train")
    handler, me = _StdoutLines(), threading.get_ident()
    # the emitting thread, not record.thread: that is None under logging.logThreads = False
    handler.addFilter(lambda record: threading.get_ident() == me)
    with _summary_lock:
        if _summary_runs[0] == 0:
            _summary_runs[1] = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
        _summary_runs[0] += 1
        logger.addHandler(handler)
    _summary_thread.printing = True
    try:
        yield
    finally:
        _summary_thread.printing = False
        with _summary_lock:
            logger.removeHandler(handler)
            _summary_runs[0] -= 1
            if _summary_runs[0] == 0:
                logger.setLevel(_summary_runs[1])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only import the chosen command's module: `videoact --help` stays fast.
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=chosen or "")
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # a mistyped flag after the command: that command's usage (its flags)
        after = args.command is not None and argv.index(unknown[0]) > argv.index(args.command)
        (args.command_parser if after else parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help()
        return 2
    from .decode import quiet_decoders

    quiet_decoders()  # FFmpeg's own lines: each command reports every problem itself
    module = importlib.import_module(f"videoact.commands.{COMMANDS[args.command][0]}")
    from .device import DeviceError  # no torch import: `videoact --help` stays fast

    status, flushing = 0, False
    try:
        with _warnings_as_lines(args.command), _summary_lines():
            status = int(module.run(args) or 0)
        flushing = True
        if sys.stdout is not None:  # None: no console (pythonw)
            sys.stdout.flush()  # a reader that has gone, or a full disk, shows here
        return status
    except DeviceError as exc:  # a --device (or *.device setting) this machine cannot serve
        print(f"videoact {args.command}: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, RuntimeError) as exc:
        from .backbones import WeightsNotFoundError, WeightsUnavailableError

        if not isinstance(exc, (WeightsNotFoundError, WeightsUnavailableError)):
            raise
        # Backbone weights not here (a file path, offline torchvision): the message says what to pass.
        print(f"videoact {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `videoact infer ... | head`: the reader has gone; stop quietly
        stdout_to_devnull()
        # As a shell reports a process ended by SIGPIPE; a failure the run reported (at the
        # final flush) says more than the gone reader.
        return status or 141
    except OSError as exc:
        # stdout refused main's final flush, or a print inside the command (`... > results.txt`
        # on a full disk, line-buffered or past its 8 kB buffer): then what it could not write
        # is still pending, so stdout refuses it again. Any other file's error is the
        # command's to report: raised.
        if not (flushing or stdout_refuses()):
            raise
        stdout_to_devnull()
        print(f"videoact {args.command}: cannot write to stdout: {exc.strerror or exc}", file=sys.stderr)
        return status or 1


if __name__ == "__main__":
    sys.exit(main())
