"""The category of videoact's own warnings: problems in the user's data or setup that a
run goes on past (a video skipped, a list entry left out, a lock a file system refuses).

A program can catch them, filter them, or make them errors
(``warnings.simplefilter("error", VideoactWarning)``); the ``videoact`` command prints
every one as a ``videoact CMD: warning: ...`` line, whatever ``-W`` says, and leaves other
libraries' warnings (torch's) to Python's filters.
"""
from __future__ import annotations

__all__ = ["VideoactWarning"]


class VideoactWarning(UserWarning):
    """A problem in the user's data or setup that the run went on past."""
