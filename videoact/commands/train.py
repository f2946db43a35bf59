"""``videoact train [CONFIG] --data TRAIN [--val VAL] [--work-dir DIR] [--set key=value ...]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import stdout_failed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="YAML config file, or a shipped config's name (default, synthetic); default: the built-in defaults")
    p.add_argument("--data", help="training videos: class-per-subfolder folder or annotation list (data.train)")
    p.add_argument("--val", help="validation videos (data.val); default: a stratified hold-out of --data")
    p.add_argument("--test", help="test videos (data.test), evaluated with best.pt at the end")
    p.add_argument("--root", help="dataset root for relative paths in list files (data.root)")
    p.add_argument("--classes", help="classes file fixing the class order (data.classes), e.g. a converter's "
                   "classes.txt or UCF101's classInd.txt")
    p.add_argument("--work-dir", help="output folder: config.yaml, metrics.jsonl, last.pt, best.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")


def run(args: argparse.Namespace) -> int:
    from ..atomic import InUseError
    from ..checkpoint import CheckpointError
    from ..config import ConfigError, load_config
    from ..feature_cache import FeatureCacheError
    from ..distributed import DistributedSetupError, distributed_session
    from ..evaluation import format_top5
    from ..training import TrainingError, train

    paths = {key: value for key, value in (("data.train", args.data), ("data.val", args.val), ("data.test", args.test),
                                           ("data.root", args.root), ("data.classes", args.classes),
                                           ("work_dir", args.work_dir)) if value is not None}
    try:
        cfg = load_config(args.config, args.overrides, values=paths)
        # Under torchrun (WORLD_SIZE > 1): DistributedDataParallel, rank 0 writes and prints.
        with distributed_session(cfg.train.device) as dist_info:
            summary = train(cfg)
    # OSError: missing data, a full disk, ... (the message names the file); ValueError: e.g. an
    # unknown feature.backbone or a weights file that is not there.
    except (ConfigError, TrainingError, DistributedSetupError, CheckpointError, FeatureCacheError, InUseError,
            OSError, ValueError) as exc:
        if stdout_failed(exc):
            raise  # stdout's own failure (a full disk): main says it as such
        print(f"videoact train: {exc}", file=sys.stderr)
        return 2
    if not dist_info.is_main:
        return 0
    stopped = " (stopped early: no better validation accuracy for train.early_stopping_patience epochs)"
    at = f" at epoch {summary['best_epoch'] + 1}" if summary["best_epoch"] is not None else ""
    print(f"best validation accuracy: {summary['best_val_acc'] * 100:.2f}%{at} of {summary['epochs_run']} run"
          f"{stopped if summary['stopped_early'] else ''}; checkpoints in {summary['work_dir']}")
    if summary["selected_epoch"] is not None and summary["selected_epoch"] != summary["best_epoch"]:
        held = summary["selected_epoch"]
        last = summary["history"][-1]["epoch"] if summary["history"] else None
        why = ("the last (train.select: last)" if held == last and cfg.train.select == "last" else
               "saved under an earlier train.select (the best epoch's weights were not kept)")
        print(f"best.pt holds epoch {held + 1}, {why}")
    if "test" in summary:
        t = summary["test"]
        print(f"test: top-1 {t['top1'] * 100:.2f}%  {format_top5(t)}  "
              f"mean class accuracy {t['mean_class_acc'] * 100:.2f}% (all metrics: "
              f"{Path(summary['work_dir']) / 'test.json'})")
    unreadable = summary.get("unreadable") or []
    if unreadable:  # said as they were met, and again here, where a long run's log ends
        print(f"{len(unreadable)} {'video' if len(unreadable) == 1 else 'videos'} could not be read and "
              f"{'was' if len(unreadable) == 1 else 'were'} left out:", file=sys.stderr)
        for reason in unreadable[:10]:
            print(f"  {reason}", file=sys.stderr)
        if len(unreadable) > 10:
            print(f"  ... and {len(unreadable) - 10} more", file=sys.stderr)
    return 0
