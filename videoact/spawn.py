"""Starting worker processes without re-running the user's script.

A spawned (or forkserver) child imports the parent's ``__main__`` script unless it was
run with ``python -m``: a script without an ``if __name__ == "__main__":`` guard would
start its whole job again in every worker, which then dies. videoact's workers (decode
workers of ``extract`` and ``decode-frames``, ``check``'s killable workers, training's
DataLoader workers where they are spawned) need only videoact itself, so while they
start ``__main__`` is a bare stub.
"""
from __future__ import annotations

import contextlib
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
