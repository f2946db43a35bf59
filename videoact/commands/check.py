"""``videoact check SRC [--json OUT] [--quarantine OUT.txt] [--workers N] [--timeout S]``.

Reports every video of a folder or annotation list as readable, readable with the
fallback decoder, partially readable (frames decoded versus claimed) or unreadable
with the reason. Exit status: 0 when every file is usable, 1 when some file is
unreadable, 2 for a usage error (no such SRC) or a report that cannot be written, 130
after a Ctrl-C (the files checked are reported and written, an earlier --json or
--quarantine file kept as it was). SIGTERM (``timeout``, SLURM, ``kill``) and SIGHUP (the
terminal closed; not under ``nohup``) stop the check as a Ctrl-C does, with the shell's
status for the signal: 143 and 129.
"""
from __future__ import annotations

import argparse
import signal
import sys

from . import keep_earlier_output, output_folder_error, seconds_limit, stop_signals_as_ctrl_c, worker_count


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder of videos (searched recursively), a video, or an annotation list")
    p.add_argument("--root", help="dataset root for relative paths in a list file (default: the list's folder)")
    p.add_argument("--json", metavar="OUT.json", help="write the full report as JSON")
    p.add_argument("--quarantine", metavar="OUT.txt",
                   help="write the unreadable files, one path per line, for `videoact extract --exclude` "
                        "or the config key data.exclude")
    p.add_argument("--quarantine-partial", action="store_true",
                   help="also quarantine partially readable files")
    p.add_argument("--workers", type=worker_count, default=None,
                   help="worker processes (default: CPU count, at most 8; 0 = in this process, no time limit)")
    p.add_argument("--timeout", type=seconds_limit, default=60.0,
                   help="seconds a file may go without progress (a --deep decode reports every few frames) "
                        "before its worker is killed (default: %(default)s; 0 = none)")
    p.add_argument("--deep", action="store_true",
                   help="decode every frame (finds damage in the middle; slower)")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "opencv"])
    p.add_argument("--quiet", action="store_true", help="no per-file progress lines")


def run(args: argparse.Namespace) -> int:
    from ..atomic import clobber_error
    from ..health import PARTIAL, UNREADABLE, CheckInterrupted, check_videos, write_quarantine, write_report

    outputs = [("--json", args.json), ("--quarantine", args.quarantine)]
    clash = clobber_error(outputs, [args.src])  # e.g. --quarantine onto the list being checked
    # Where the files go, before the scan, not after it (a file where their folder should be)
    for option, path, what in (("--json", args.json, "the report"),
                               ("--quarantine", args.quarantine, "the quarantine list")):
        clash = clash or (path and output_folder_error(option, path, what))
    if clash:
        print(f"videoact check: {clash}", file=sys.stderr)
        return 2

    def show(result) -> None:
        if not args.quiet:
            print(f"{result.status:<10}  {result.path}", file=sys.stderr, flush=True)

    # SIGTERM and SIGHUP stop the check as Ctrl-C does, so that a job killed at its time
    # limit still reports and writes what it found.
    stopped_by: list[signal.Signals] = []
    previous = stop_signals_as_ctrl_c(stopped_by)
    try:
        report = check_videos(args.src, root=args.root, workers=args.workers, timeout=args.timeout,
                              deep=args.deep, backend=args.backend, progress=show)
    except CheckInterrupted as exc:  # a long check's findings are kept: reported and written
        report = exc.report
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"videoact check: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not report.files and not report.problems and not report.interrupted:  # as `videoact extract` and `infer` say it
        print(f"videoact check: no videos found in {args.src}", file=sys.stderr)
        return 1

    def summary(json_path: str | None = None) -> None:
        if not args.quiet:
            print(file=sys.stderr)
        print(report.summary(json_path=json_path))

    clash = clobber_error(outputs, [f.path for f in report.files] + report.unchecked)  # or onto one of the videos
    if clash:
        summary()
        print(f"videoact check: {clash}", file=sys.stderr)
        return 2
    interrupted = report.interrupted
    cut_short = bool(report.unchecked)  # a Ctrl-C after the last file leaves a complete report
    # The files first, then the summary: `videoact check ... | head -1` ends this process at
    # the first print past the pipe's reader (exit 141), which must not cost the files.
    # Written atomically: a failure leaves nothing half-written. Each is tried, whatever
    # became of the other.
    cannot_write, written, json_written = False, [], None
    if args.json and not (cut_short and keep_earlier_output("check", "--json", args.json)):
        try:
            write_report(report, args.json)
        except OSError as exc:  # e.g. a full disk
            cannot_write = _cannot_write(args.json, exc)
        else:
            written.append(f"JSON report: {args.json}")
            json_written = args.json  # where the summary sends its reader for the files it leaves out
    if args.quarantine and not (cut_short and keep_earlier_output("check", "--quarantine", args.quarantine)):
        statuses = (UNREADABLE, PARTIAL) if args.quarantine_partial else (UNREADABLE,)
        try:
            listed = write_quarantine(report, args.quarantine, statuses)
        except OSError as exc:
            cannot_write = _cannot_write(args.quarantine, exc)
        else:
            written.append(f"quarantine list ({len(listed)} files): {args.quarantine}")
    summary(json_written)
    for line in written:
        print(line)
    if interrupted:
        by = f" ({stopped_by[0].name})" if stopped_by else ""
        print(f"videoact check: interrupted after {len(report.files)} of "
              f"{len(report.files) + len(report.unchecked)} files{by}", file=sys.stderr)
        # As videoact's main reports a Ctrl-C; a signal's as a shell reports a process it ended.
        return 128 + stopped_by[0] if stopped_by else 130
    if cannot_write:
        return 2
    if report.problems and not report.files:  # nothing could be checked: not a pass
        print(f"videoact check: no file of {args.src} could be checked (the annotation problems above)",
              file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def _cannot_write(target: str, exc: OSError) -> bool:
    print(f"videoact check: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
    return True
