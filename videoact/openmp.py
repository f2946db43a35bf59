"""OpenMP settings that must be made before torch loads its OpenMP runtime.

PyTorch's CPU kernels run on GNU OpenMP (libgomp). After each parallel region its
worker threads busy-wait for the next one, by default for 300,000 spins (milliseconds
on current CPUs). Feature extraction on a CPU decodes a video between backbone batches
in the main thread, and the spinning worker slows that decoding: measured on a 2-core
machine (docs/benchmarks.md), decoding between batches took 0.19-0.23 s per 256 frames
with the default spin and 0.15 s with 10,000 spins, while backbone-only throughput
stayed the same (the gaps between operators inside one forward pass are far shorter
than 10,000 spins). End to end: 0.73-0.78 of backbone-only rose to 0.82-0.86.

libgomp reads the environment once, when it is loaded (with ``import torch``), so this
is applied when ``videoact`` is imported: before torch for the ``videoact`` command,
``tools/*.py`` and programs that import videoact first. A value the user set for
``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` is kept.
"""
from __future__ import annotations

import os
import sys

SPIN_COUNT = "10000"


def prefer_short_spin() -> bool:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a wait policy or torch is loaded.
    Returns whether the setting was made now."""
    if "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    if "torch" in sys.modules:  # too late: the OpenMP runtime has read the environment
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
