"""``videoact demo``: synthetic benchmark -> features -> BiLSTM vs mean-pool -> one prediction."""
from __future__ import annotations

import argparse
import sys

from . import positive_int, stdout_failed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--size", default="demo", choices=["tiny", "demo", "full"],
                   help="benchmark size: demo fits in a few minutes on 2 CPU cores; full is the benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=positive_int, default=2, help="worker processes for video writing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both models, e.g. --set train.epochs=20")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError
    from ..demo import run_demo
    from ..training import TrainingError

    try:
        run_demo(args.out, size=args.size, seed=args.seed, overrides=args.overrides, workers=args.workers)
    except (ValueError, TrainingError, CheckpointError, OSError) as exc:  # ConfigError is a ValueError
        if stdout_failed(exc):
            raise  # stdout's own failure (a full disk): main says it as such
        print(f"videoact demo: {exc}", file=sys.stderr)
        return 2
    return 0
