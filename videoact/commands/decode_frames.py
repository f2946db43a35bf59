"""``videoact decode-frames SRC OUT``: decode a folder of videos into JPEG frame folders."""
from __future__ import annotations

import argparse
import os
import sys

from . import positive_int, positive_number, seconds_limit, worker_count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="a video file or a folder of videos (searched recursively)")
    parser.add_argument("out", help="output folder: OUT/<relative path without extension>/img_00001.jpg ...")
    parser.add_argument("--fps", type=positive_number, default=None,
                        help="frames per second to keep (default: every frame)")
    parser.add_argument("--short-side", type=positive_int, default=None,
                        help="resize so the shorter side has this many pixels (default: keep size)")
    parser.add_argument("--workers", type=worker_count, default=min(4, os.cpu_count() or 1),
                        help="parallel worker processes (default: %(default)s)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality 1..100 (default: 95)")
    parser.add_argument("--backend", choices=("auto", "decord", "opencv"), default="auto",
                        help="decoder (default: auto = decord, OpenCV fallback)")
    parser.add_argument("--timeout", type=seconds_limit, default=300.0,
                        help="seconds a video may go without a decoded frame before its worker is "
                             "killed and the video reported (default: %(default)s; 0 = no limit)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from videoact.frames import FAILURES_NAME, decode_folder

    if not os.path.exists(args.src):
        print(f"videoact decode-frames: {args.src}: no such file or folder", file=sys.stderr)
        return 2
    try:
        report = decode_folder(
            args.src, args.out, fps=args.fps, short_side=args.short_side, quality=args.quality,
            workers=args.workers, backend=args.backend, progress=not args.quiet,
            timeout=args.timeout or None,
        )
    except (ValueError, NotADirectoryError, PermissionError) as e:  # bad settings, an OUT it cannot write
        print(f"videoact decode-frames: {e}", file=sys.stderr)
        return 2
    if not report.results:  # as `videoact extract` and `infer` say it
        print(f"videoact decode-frames: no videos found in {args.src}", file=sys.stderr)
        return 1
    n_frames = sum(r.num_frames for r in report.decoded)
    print(f"decoded {len(report.decoded)} videos ({n_frames} frames), "
          f"skipped {len(report.skipped)} already complete, failed {len(report.failed)}")
    if report.failed:
        print(f"{len(report.failed)} videos failed (also listed in "
              f"{os.path.join(args.out, FAILURES_NAME)}):", file=sys.stderr)
        for r in report.failed:
            print(f"  {r.error}", file=sys.stderr)
        return 1
    return 0
