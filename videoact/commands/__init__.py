"""Argument parsing for each ``videoact`` sub-command (see ``videoact/cli.py``)."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Iterable, Sequence


def tune_cpu_allocator(device: str) -> None:
    """For commands that run the backbone: on the CPU, keep freed memory in the process
    (:func:`videoact.extract.keep_freed_memory`, as ``videoact extract`` does), so each
    batch of frames does not page-fault its activation maps in again (measured: Lite0 at
    448 px, 8 frames a batch, another job running: 10-11 frames/s without, 47-53 with)."""
    from ..extract import keep_freed_memory, resolve_device

    try:
        cpu = resolve_device(device).type == "cpu"
    except (RuntimeError, ValueError):  # a bad --device: the command reports it itself
        return
    if cpu:
        keep_freed_memory()


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


def seconds_limit(text: str) -> float:
    """``--timeout``: seconds >= 0, where 0 means no limit."""
    return _checked(text, float, lambda v: math.isfinite(v) and v >= 0, "a number of seconds >= 0 (0 = no limit)")


def probability(text: str) -> float:
    """``--threshold``: a probability in [0, 1] (the check ``StreamClassifier`` makes)."""
    return _checked(text, float, lambda v: 0.0 <= v <= 1.0, "a probability in [0, 1]")


# ------------------------------------------------------------------ outputs vs inputs


def _identity(path: str | os.PathLike) -> tuple:
    """What makes two names the same file: (device, inode) when it exists (hard links,
    symlinks), else the resolved path. ``dir/missing/../clip.mp4`` is ``dir/clip.mp4``
    once written (the missing folder is made first), so it is resolved before ``stat``."""
    try:
        resolved = str(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, ...
        resolved = os.path.abspath(path)
    for name in (path, resolved):
        try:
            st = os.stat(name)
            return ("inode", st.st_dev, st.st_ino)
        except (OSError, ValueError):
            pass
    return ("path", resolved)


def clobber_error(outputs: Sequence[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[str | os.PathLike]) -> str | None:
    """A usage error when an output (``(option, path)``; ``None`` paths are skipped)
    is one of ``inputs``, or two outputs are the same file; else None.

    Writing the output would replace that input (a video, the checkpoint, a list file)
    with a JSON file or an annotated copy: refused before any work."""
    given = [(option, path) for option, path in outputs if path is not None]
    if not given:
        return None
    wanted = {}
    for option, path in given:
        key = _identity(path)
        if key in wanted:
            return f"{wanted[key][0]} and {option} are the same file ({path}): give two different files"
        wanted[key] = (option, path)
    for source in inputs:
        hit = wanted.get(_identity(source))
        if hit is not None:
            option, path = hit
            return (f"{option} {path} is the input {source}: writing it would replace that file; "
                    "give another output file")
    for option, path in given:
        if os.path.isdir(path):
            return f"{option} {path} is a directory: give a file name"
    return None
