"""Starting worker processes without re-running the user's script.

A spawned (or forkserver) child imports the parent's ``__main__`` script unless it was
run with ``python -m``: a script without an ``if __name__ == "__main__":`` guard would
start its whole job again in every worker, which then dies. videoact's workers (decode
workers of ``extract`` and ``decode-frames``, ``check``'s killable workers, training's
DataLoader workers where they are spawned) need only videoact itself, so while they
start ``__main__`` is a bare stub. Workers the parent stops itself start deaf to Ctrl-C
(``deaf_to_ctrl_c``), and they end without the interpreter's teardown
(:func:`exit_without_teardown`).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import types
from typing import Any, Iterator


@contextlib.contextmanager
def main_script_hidden(deaf_to_ctrl_c: bool = False) -> Iterator[None]:
    """Within this block, processes started see an empty ``__main__`` module.

    ``deaf_to_ctrl_c``: their ``__main__`` is :mod:`videoact._worker_start` instead, the first
    code a spawned child runs (before it unpickles its work, which imports torch), and it
    ignores SIGINT until the worker calls :func:`hear_ctrl_c`. Why: Ctrl-C reaches every
    process of the terminal's group, and a worker hit while it imported torch printed a
    KeyboardInterrupt traceback (two for ``videoact extract --workers 2``) above the
    parent's one-line "interrupted". For workers that their parent stops itself."""
    main = sys.modules.get("__main__")
    if not deaf_to_ctrl_c and (main is None or getattr(main, "__spec__", None) is not None
                               or not getattr(main, "__file__", None)):
        yield
        return
    stub = types.ModuleType("__main__")
    if deaf_to_ctrl_c:
        # multiprocessing's spawn runs the module named by __main__.__spec__.name first
        stub.__spec__ = types.SimpleNamespace(name="videoact._worker_start")  # type: ignore[assignment]
    sys.modules["__main__"] = stub
    try:
        with _ctrl_c_deferred() if deaf_to_ctrl_c else contextlib.nullcontext():
            yield
    finally:
        sys.modules["__main__"] = main


@contextlib.contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    """A Ctrl-C within the block takes effect at its end. Starting DataLoader workers is
    not safe to interrupt: a KeyboardInterrupt in there left a half-made iterator whose
    ``__del__`` printed an AttributeError traceback. Only in the main thread, where signal
    handlers are set (elsewhere SIGINT reaches the main thread anyway)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) in (None, signal.SIG_IGN)):
        # Nothing to defer where Ctrl-C is ignored (and the workers inherit that), nor where
        # the handler was set from C (an embedding program): Python cannot put it back.
        yield
        return
    caught: list[Any] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if caught:
            if callable(old):
                old(signal.SIGINT, caught[0])
            elif old == signal.SIG_DFL:
                raise KeyboardInterrupt


def exit_without_teardown() -> None:
    """End this (worker) process now, status 0, skipping the interpreter's teardown: for a
    worker whose work is done and sent (multiprocessing's queues flushed). Measured (2 decode
    workers stopped while busy, 2 cores): they ended in 1.3-1.6 s with the teardown and
    0.2 s without; a worker stopped in mid-video sometimes aborted in it ("terminate called
    without an active exception", SIGABRT: a decoder's C++ thread destroyed while running).
    Run at ``atexit``, it makes the status 0 whatever ended the worker in Python (a
    SystemExit): its parent must judge by more than the status (see extract's
    ``_LoaderSurvivingCrashes._dead_workers``)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def hear_ctrl_c() -> None:
    """In a worker started under ``main_script_hidden(deaf_to_ctrl_c=True)``, once Ctrl-C
    may end it: SIGINT raises KeyboardInterrupt again (Python's own handler), unless the
    worker was to ignore it anyway (its parent did: a background job)."""
    start = sys.modules.get("__mp_main__")
    if getattr(start, "INHERITED_SIGINT", None) == signal.SIG_IGN:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)


def signal_name(signum: int) -> str:
    """``"SIGKILL"``, or ``"signal 99"`` for a number without a name here (a worker's
    negative exit code, negated)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
