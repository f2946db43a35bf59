"""``videoact extract SRC OUT``: per-frame CNN features for a folder of videos or a list."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import LAYERS, POOLINGS
from . import positive_int, positive_number, seconds_limit, worker_count


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder of videos (searched recursively), one video, or an annotation list file")
    p.add_argument("out", help="cache folder: OUT/<relative video path>.safetensors")
    p.add_argument("--root", help="the folder cache paths are relative to, and a list file's paths (default: "
                                  "SRC itself for a folder, the list's folder for a list). Match training's: "
                                  "data.root, or the folder holding all its train/val/test videos")
    p.add_argument("--backbone", default="efficientnet_lite0", help="backbone name (default: %(default)s)")
    p.add_argument("--weights", default=None, help="torchvision weights enum name or a local weights file")
    p.add_argument("--pooling", default="avg", choices=POOLINGS, help="average, or a GxG grid of averages (default: %(default)s)")
    p.add_argument("--layer", default="last", choices=LAYERS,
                   help="backbone feature map: the last, the stage before it, or the last stage at stride 16 / 8 / 4 (default: %(default)s)")
    p.add_argument("--image-size", type=positive_int, default=None, help="input size (default: the backbone's)")
    p.add_argument("--resize", default="short_side_center_crop", choices=["short_side_center_crop", "squash"],
                   help="keep aspect and crop the centre, or stretch the whole frame (default: %(default)s)")
    p.add_argument("--sampling", default="all", choices=["all", "uniform", "dense", "fps"],
                   help="every frame, TSN segment centres, every Nth frame, or N frames a second (default: "
                        "%(default)s; training's default is uniform with 16 segments: give the same to share the cache)")
    # Defaults filled in run(): an option given for another --sampling mode is an error, not ignored.
    p.add_argument("--num-segments", type=positive_int, default=None, help="with --sampling uniform (default 16)")
    p.add_argument("--segment-frames", type=positive_int, default=None,
                   help="with --sampling uniform: frames per segment, for training's temporal jitter (default 1)")
    p.add_argument("--stride", type=positive_int, default=None, help="with --sampling dense (default 1)")
    p.add_argument("--fps", type=positive_number, default=None, help="with --sampling fps (default 8)")
    p.add_argument("--max-frames", type=positive_int, default=None, help="cap frames per video (spread over the video)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="frames per backbone batch (default: 64; on a CPU fewer above 224 px, 16 at 448)")
    p.add_argument("--workers", type=worker_count, default=None, help="decoding worker processes (0: in this process)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision where the hardware has it: bf16/fp16 on CUDA, bf16 on CPUs with "
                        "AVX512-BF16 or AMX (else float32). Faster; features differ from float32 ones by "
                        "rounding, and the cache records which (default: float32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument("--backend", default="auto", choices=["auto", "decord", "opencv"])
    p.add_argument("--timeout", type=seconds_limit, default=300.0,
                   help="seconds allowed per video file (default: %(default)s; 0 = none)")
    p.add_argument("--exclude", metavar="LIST",
                   help="skip the videos listed in this file (one path per line, e.g. from "
                        "`videoact check --quarantine`)")
    p.add_argument("--no-progress", action="store_true")


def gather_videos(src: str, root: str | None = None) -> tuple[list[Path], Path, list[str]]:
    """Videos named by SRC (a folder or a list file), the root their cache paths are relative
    to, and the list's entries left out (warned; not its missing videos: those are extracted,
    and fail as any unreadable video does)."""
    from ..decode import VIDEO_EXTENSIONS

    path = Path(src)
    if path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS:
        base = Path(root) if root else path if path.is_dir() else path.parent
        inside = os.path.commonpath([os.path.abspath(path), os.path.abspath(base)]) == os.path.abspath(base)
        if not inside:
            raise OSError(f"{src} is not inside --root {root}: cache paths are relative to the root")
    if path.is_dir():
        from ..decode import list_videos

        return list_videos(path), base, []
    if path.is_file():
        from ..datasets import DUPLICATE, load_dataset, warn_problems

        if path.suffix.lower() in VIDEO_EXTENSIONS:  # one video, not a list
            return [path], base, []
        base = Path(root) if root else path.parent
        # Features need no labels: a list of bare paths (as UCF101's test lists) is read, as check reads it.
        # Missing videos are kept: each is then a failure at the end and in failures.jsonl, not a
        # warning lost above the summary of a run that exited 0.
        samples, _classes, problems = load_dataset(path, root=base, labels=False, check_files=False)
        warn_problems(path, problems)
        # A line listed again is extracted all the same; other problems leave a video out.
        left_out = [str(p) for p in problems if p.kind != DUPLICATE]
        return [s.path for s in samples], base, left_out
    raise FileNotFoundError(f"{src}: no such folder, video or list file")  # exit 2, as check and decode-frames


def run(args: argparse.Namespace) -> int:
    from ..extract import SamplingSpec, extract_features

    for option, value, mode in (("--num-segments", args.num_segments, "uniform"),
                                ("--segment-frames", args.segment_frames, "uniform"), ("--stride", args.stride, "dense"),
                                ("--fps", args.fps, "fps")):
        if value is not None and args.sampling != mode:
            print(f"videoact extract: {option} is for --sampling {mode}, and the sampling is {args.sampling}"
                  + (" (the default: every frame)" if args.sampling == "all" else ""), file=sys.stderr)
            return 2
    try:
        videos, root, left_out = gather_videos(args.src, args.root)
    # An unreadable list (AnnotationError, a ValueError), a model given for it, a --root that is not there.
    except (ValueError, OSError) as exc:
        print(f"videoact extract: {exc}", file=sys.stderr)
        return 2
    excluded_line = None
    if args.exclude:
        from ..health import exclude_paths, read_exclude_list

        try:
            excluded = read_exclude_list(args.exclude)
        except (FileNotFoundError, ValueError) as exc:
            print(f"videoact extract: {exc}", file=sys.stderr)
            return 2
        videos, dropped = exclude_paths(videos, excluded)
        excluded_line = f"excluded {len(dropped)} videos listed in {args.exclude}"
    if not videos:
        if excluded_line:
            print(excluded_line)
        print(f"videoact extract: no videos found in {args.src}"
              + (f" ({len(left_out)} entries with problems, warnings above)" if left_out else ""), file=sys.stderr)
        return 1
    given = {"num_segments": args.num_segments, "segment_frames": args.segment_frames, "stride": args.stride,
             "target_fps": args.fps}
    sampling = SamplingSpec(mode=args.sampling, max_frames=args.max_frames,
                            **{key: value for key, value in given.items() if value is not None})
    # Under torchrun (WORLD_SIZE > 1) each rank takes every WORLD_SIZE-th video.
    from ..distributed import DistributedSetupError, all_gather_objects, distributed_session

    try:
        with distributed_session(args.device) as dist_info:
            if excluded_line and dist_info.is_main:  # a summary line, as `videoact train` prints it
                print(excluded_line, flush=True)
            result = extract_features(
                videos, args.out, root=root, backbone=args.backbone, weights=args.weights, pooling=args.pooling, layer=args.layer,
                image_size=args.image_size, sampling=sampling, resize=args.resize, batch_size=args.batch_size,
                num_workers=args.workers, device=dist_info.device if dist_info.enabled else args.device,
                amp=args.amp, compile=args.compile, backend=args.backend, file_timeout=args.timeout or None,
                shard=(dist_info.rank, dist_info.world_size), progress=not args.no_progress and dist_info.is_main,
            )
            parts = all_gather_objects((len(result.written), len(result.skipped), result.failed,
                                        result.frames, result.seconds))
    except (DistributedSetupError, ValueError, OSError) as exc:  # e.g. an unknown --backbone, a missing --weights file
        print(f"videoact extract: {exc}", file=sys.stderr)
        return 2
    written, skipped = sum(p[0] for p in parts), sum(p[1] for p in parts)
    failed = [f for p in parts for f in p[2]]
    log_error = result.failure_log_error  # rank 0's, which writes the one log
    frames, seconds = sum(p[3] for p in parts), max(p[4] for p in parts)
    if not dist_info.is_main:
        return 1 if failed else 0
    ranks = f" on {len(parts)} ranks" if len(parts) > 1 else ""
    print(f"extracted {written} videos ({frames} frames, "
          f"{frames / max(seconds, 1e-9):.1f} frames/s{ranks}), "
          f"skipped {skipped} up to date, failed {len(failed)}")
    if failed:
        print("failures:" if log_error else f"failures (also in {Path(args.out) / 'failures.jsonl'}):",
              file=sys.stderr)
        for failure in failed:
            print(f"  {failure.reason}", file=sys.stderr)
    if log_error:  # the features written are kept; only the record of failures is not up to date
        print(f"videoact extract: the failure log {log_error}", file=sys.stderr)
    if left_out:  # as `videoact test` counts them: the run did not do all it was given
        print(f"left out: {len(left_out)} list entries with problems (warnings above)", file=sys.stderr)
    return 1 if failed or left_out or log_error else 0
