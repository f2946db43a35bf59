"""The ``videoact`` sub-commands, a module each (see ``videoact/cli.py``), and what they
share: argparse value checks, output checks made before any work, stdout handling, and the
CPU allocator choice (process-wide, so a command's policy, not the library's)."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from typing import Any


def stop_signals_as_ctrl_c(came: list[signal.Signals] | None = None) -> dict[signal.Signals, Any]:
    """From now on SIGTERM (``timeout``, SLURM, ``kill``) and SIGHUP (the terminal or SSH
    session closed) raise KeyboardInterrupt, so that the command stops as cleanly as on a
    Ctrl-C; each one that comes is appended to ``came``. A signal already ignored stays so:
    under ``nohup``, a hang-up must not stop the run. Returns the handlers replaced (keys:
    the signals now handled), for the caller to put back."""
    def _terminate(signum, frame):  # noqa: ANN001
        if came is not None:
            came.append(signal.Signals(signum))
        raise KeyboardInterrupt

    stop = [sig for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None))
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN]
    return {sig: signal.signal(sig, _terminate) for sig in stop}


def tune_cpu_allocator(device: str) -> None:
    """For commands that run the backbone: on the CPU, keep freed memory in the process
    (:func:`videoact.fast_inference.keep_freed_memory`, as ``videoact extract`` does), so each
    batch of frames does not page-fault its activation maps in again (measured: Lite0 at
    448 px, 8 frames a batch, another job running: 10-11 frames/s without, 47-53 with)."""
    from ..device import resolve_device
    from ..fast_inference import keep_freed_memory

    try:
        cpu = resolve_device(device).type == "cpu"
    except (RuntimeError, ValueError):  # a bad --device: the command reports it itself
        return
    if cpu:
        keep_freed_memory()


def keep_earlier_output(command: str, option: str, path: str) -> bool:
    """After a Ctrl-C: True, and said, when an earlier ``path`` is there. A run cut short
    never replaces it (it may be a complete run's, as ``--annotate`` and ``--record`` keep
    theirs); with nothing there (a broken symbolic link included, which a complete run
    replaces too), the command writes what was done."""
    if not os.path.exists(path):
        return False
    print(f"videoact {command}: {option} {path} not written: the run was interrupted, and the earlier file "
          "there is kept as it was", file=sys.stderr)
    return True


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null once its reader has gone or it refuses writes: what is left
    in its buffer goes nowhere, and Python's flush at exit raises no second error."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _stdout_error() -> OSError | ValueError | None:
    """The error flushing stdout raises now, or None."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as exc:
        return exc
    return None


def stdout_refuses() -> bool:
    """Whether flushing stdout fails now (what a failed write left in its buffer)."""
    return _stdout_error() is not None


def stdout_failed(exc: BaseException) -> bool:
    """Whether ``exc``, an error a command met, was stdout's (a full disk under
    ``> results.txt``), for ``videoact.cli.main`` to say as such: stdout refuses a flush
    now with the same errno, and ``exc`` names no file. Told from what the failed write
    left in stdout's buffer, so not under ``python -u`` / PYTHONUNBUFFERED (no buffer):
    there the error stays the command's, "[Errno 28] ..."."""
    if not isinstance(exc, OSError) or exc.filename is not None:
        return False
    refused = _stdout_error()
    return isinstance(refused, OSError) and refused.errno == exc.errno


def output_folder_error(option: str, path: str | os.PathLike, what: str) -> str | None:
    """A usage error when the file ``path`` given to ``option`` cannot be written where it
    is, else None: said before the work, not after an evaluation of every video. Nothing
    is made: the nearest folder of ``path`` that exists must be a folder this process may
    write in (the write makes the missing ones below it). The folder is taken as the
    write takes it (``link/..`` through the link), not normalised as text."""
    folder = os.path.dirname(os.fspath(path)) or os.curdir
    while True:
        try:
            os.lstat(folder)
            break
        except (FileNotFoundError, NotADirectoryError):  # missing: the write makes it in its parent
            pass
        except OSError as exc:  # a name too long, a symlink loop, a parent that cannot be searched
            return f"{option} {path}: {folder}: {exc.strerror or exc}"
        parent = os.path.dirname(folder.rstrip(os.sep)) or os.curdir
        if parent == folder:
            break
        folder = parent
    if os.path.islink(folder) and not os.path.exists(folder):
        return (f"{option} {path}: {folder}: a broken symbolic link (to {os.readlink(folder)}), "
                f"not a folder for {what}")
    if not os.path.isdir(folder):
        return f"{option} {path}: {folder}: a file, not a folder for {what}"
    if not os.access(folder, os.W_OK | os.X_OK):  # EROFS too: access() asks the file system
        return f"{option} {path}: {folder}: cannot write {what} there (permission denied or read-only)"
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(os.path.basename(os.fspath(path)))) > longest:
        return f"{option} {path}: the file name is too long (at most {longest} bytes here)"
    return None


# ------------------------------------------------------------------ argument checks
# argparse ``type=`` functions: a bad value is a usage error (exit 2,
# ``videoact CMD: error: argument --top-k: ...``) before any work starts.


def _checked(text: str, convert, ok, expected: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
    return value


def positive_int(text: str) -> int:
    """``--top-k``, ``--num-clips``: a whole number >= 1."""
    return _checked(text, int, lambda v: v >= 1, "a whole number >= 1")


def worker_count(text: str) -> int:
    """``--workers``: a whole number >= 0 (0: in this process)."""
    return _checked(text, int, lambda v: v >= 0, "a whole number >= 0")


def positive_number(text: str) -> float:
    """``--fps``: a finite number > 0."""
    return _checked(text, float, lambda v: math.isfinite(v) and v > 0, "a number > 0")


def seconds_limit(text: str) -> float:
    """``--timeout``: seconds >= 0, where 0 means no limit."""
    return _checked(text, float, lambda v: math.isfinite(v) and v >= 0, "a number of seconds >= 0 (0 = no limit)")


def probability(text: str) -> float:
    """``--threshold``: a probability in [0, 1] (the check ``StreamClassifier`` makes)."""
    return _checked(text, float, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")
