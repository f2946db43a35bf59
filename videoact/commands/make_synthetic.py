"""``videoact make-synthetic OUT``: write the temporal-order benchmark videos."""
from __future__ import annotations

import argparse
import os
import sys

from . import stdout_failed


def _size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``160x120``) into (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 160x120 (width x height), got {text!r}") from None
    return w, h


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created; a rerun resumes and keeps existing clips)")
    parser.add_argument("--train-per-class", type=int, default=300, metavar="N", help="training clips per class (300)")
    parser.add_argument("--val-per-class", type=int, default=20, metavar="N", help="validation clips per class (20)")
    parser.add_argument("--test-per-class", type=int, default=20, metavar="N", help="test clips per class (20)")
    parser.add_argument("--seed", type=int, default=0, help="benchmark seed (0); each clip is seeded from it")
    parser.add_argument("--size", type=_size, default=(160, 120), metavar="WxH", help="frame size (160x120, the minimum)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        metavar="N",
        help="worker processes (default: the CPU count, at most 8); output does not depend on it",
    )
    parser.add_argument("--classes", type=_names, metavar="A,B,...",
                        help="write only these classes, e.g. rotate_cw,rotate_ccw (default: all ten)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..synthetic import describe_error, make_synthetic

    width, height = args.size
    try:
        result = make_synthetic(
            args.out,
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
            height=height,
            width=width,
            workers=args.workers,
            progress=not args.quiet,
            classes=args.classes,
        )
    except ValueError as e:
        print(f"videoact make-synthetic: {e}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as e:  # a full disk, a file where a class folder goes
        if stdout_failed(e):
            raise  # stdout's own failure: main says it as such
        print(f"videoact make-synthetic: {describe_error(e)} (the clips written so far are kept; "
              "a rerun resumes)", file=sys.stderr)
        return 1
    print(
        f"wrote {result['written']} clips, kept {result['skipped']} existing, "
        f"in {result['seconds']:.1f} s: {result['root']}"
    )
    print(f"lists: {result['train']} {result['val']} {result['test']}; classes: {result['classes']}")
    if result["unlisted"]:
        print(
            f"note: {result['unlisted']} clips beyond the requested counts are in the split folders "
            "but not in the lists (a folder-based loader will still see them)",
            file=sys.stderr,
        )
    return 0
