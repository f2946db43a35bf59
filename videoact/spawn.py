"""Starting worker processes without re-running the user's script.

A spawned (or forkserver) child imports the parent's ``__main__`` script unless it was
run with ``python -m``: a script without an ``if __name__ == "__main__":`` guard would
start its whole job again in every worker, which then dies. videoact's workers (decode
workers of ``extract`` and ``decode-frames``, ``check``'s killable workers, training's
DataLoader workers where they are spawned) need only videoact itself, so while they
start ``__main__`` is a bare stub. And they end without the interpreter's teardown
(:func:`exit_without_teardown`).
"""
from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Iterator


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """Within this block, processes started see an empty ``__main__`` module."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not getattr(main, "__file__", None):
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def exit_without_teardown() -> None:
    """End this (worker) process now, status 0, skipping the interpreter's teardown: for a
    worker whose work is done and sent (multiprocessing's queues flushed). Measured (2 decode
    workers stopped while busy, 2 cores): they ended in 1.3-1.6 s with the teardown and
    0.2 s without; a worker stopped in mid-video sometimes aborted in it ("terminate called
    without an active exception", SIGABRT: a decoder's C++ thread destroyed while running)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)
