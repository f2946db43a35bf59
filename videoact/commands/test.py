"""``videoact test CHECKPOINT DATA [--out metrics.json]``: accuracy, per-class metrics, confusion matrix."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import clobber_error
from . import keep_earlier_output, output_folder_error, positive_int, seconds_limit, tune_cpu_allocator


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="best.pt or last.pt from videoact train")
    p.add_argument("data", help="class-per-subfolder folder or annotation list")
    p.add_argument("--root", help="dataset root for relative paths in a list file")
    p.add_argument("--out", help="metrics JSON file (top1, top5, mean_class_acc, per_class, confusion_matrix)")
    p.add_argument("--confusion", help="confusion matrix PNG (default: next to --out, or ./confusion.png)")
    p.add_argument("--num-clips", type=positive_int, default=1, help="clips per video, each shifted within the segments; scores averaged")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1 ...")
    p.add_argument("--weights", metavar="FILE",
                   help="backbone weights file, where the one the checkpoint was trained with is not at its "
                        "recorded path or beside the checkpoint")
    p.add_argument("--timeout", type=seconds_limit, default=300.0,
                   help="seconds allowed per video before it is reported as failed (default: %(default)s; 0 = none)")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError
    from ..datasets import warn_problems
    from ..evaluation import EvaluationInterrupted, confusion_png, evaluate, format_report, save_metrics

    png = Path(args.confusion) if args.confusion else (
        Path(args.out).with_suffix(".confusion.png") if args.out else Path("confusion.png"))
    outputs = [("--out", args.out), ("--confusion" if args.confusion else "the confusion PNG", png)]
    clash = clobber_error(outputs, [args.checkpoint, args.data])
    # The files asked for, before the evaluation, not after it (the default ./confusion.png
    # is not: a folder it cannot go in still gets the report)
    for option, path, what in (("--out", args.out, "the metrics"), ("--confusion", args.confusion, "the PNG")):
        clash = clash or (path and output_folder_error(option, path, what))
    if clash:
        print(f"videoact test: {clash}", file=sys.stderr)
        return 2
    tune_cpu_allocator(args.device)
    try:
        metrics = evaluate(args.checkpoint, args.data, root=args.root, num_clips=args.num_clips,
                           device=args.device, progress=not args.no_progress, file_timeout=args.timeout or None,
                           weights=args.weights)
    except (CheckpointError, RuntimeError, OSError, ValueError) as exc:  # OSError: e.g. no such --root
        print(f"videoact test: {exc}", file=sys.stderr)
        return 2
    except EvaluationInterrupted as exc:
        if exc.metrics is None:  # nothing evaluated: the failures before the Ctrl-C, then "interrupted", exit 130
            for _, reason in exc.failures:
                print(f"failed: {reason}", file=sys.stderr)
            if exc.failures and exc.total is not None:
                print(f"videoact test: interrupted after {len(exc.failures)} of {exc.total} videos, none of which "
                      "could be evaluated", file=sys.stderr)
                return 130
            raise KeyboardInterrupt from None
        # A long evaluation stopped: the metrics of the videos done, said to be of those only
        # (in the JSON too: "interrupted", "not_evaluated"), and exit 130 as for any Ctrl-C.
        metrics = exc.metrics
    problems, failures = metrics["problems"], metrics["failures"]
    # Entries left out (missing videos, unknown labels) make the metrics those of part of
    # DATA, as unreadable videos do: both end with exit 1.
    status = 1 if failures or problems else 0
    # The files first, then the report: `videoact test ... | head` ends this process at the
    # first print past the pipe's reader (exit 141), which must not cost the results.
    # Each written atomically: a failed write leaves no half file.
    written = []
    cut_short = bool(metrics.get("interrupted"))
    option = "--confusion" if args.confusion else "the confusion PNG"
    try:
        if not (cut_short and keep_earlier_output("test", option, str(png))):
            confusion_png(metrics["confusion_matrix"], metrics["classes"], png)
            metrics["confusion_png"] = str(png)
            written.append(f"\nconfusion matrix image: {png}")
    except OSError as exc:  # e.g. a full disk, or a file where a folder should be
        status = _cannot_write(png, exc)
    if args.out and not (cut_short and keep_earlier_output("test", "--out", args.out)):
        try:
            save_metrics(metrics, args.out)
        except OSError as exc:
            status = _cannot_write(args.out, exc)
        else:
            written.append(f"metrics: {args.out}")
    warn_problems(args.data, problems)  # list entries left out of the metrics, as `videoact train` says them
    print(format_report(metrics))
    if problems or failures:
        print(f"\nleft out of the metrics: {len(problems)} entries with problems (warnings above), "
              f"{len(failures)} videos that could not be read")
    for line in written:
        print(line)
    for f in failures:
        print(f"failed: {f['reason']}", file=sys.stderr)
    if cut_short:
        total = len(metrics["failures"]) + metrics["num_samples"] + metrics["not_evaluated"]
        print(f"videoact test: interrupted after {total - metrics['not_evaluated']} of {total} videos: the metrics "
              "above are of those only", file=sys.stderr)
        return 130
    return status


def _cannot_write(target: str | Path, exc: OSError) -> int:
    print(f"videoact test: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
    return 1
