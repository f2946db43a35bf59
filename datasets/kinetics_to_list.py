"""Convert a Kinetics annotation CSV (label,youtube_id,time_start,time_end,split) into a videoact list.

    python datasets/kinetics_to_list.py k400/annotations/train.csv lists/k400/train.txt \
        --root k400/train --relative-to k400 --classes-out lists/k400/classes.txt
    python datasets/kinetics_to_list.py k400/annotations/val.csv lists/k400/val.txt \
        --root k400/val --relative-to k400 --classes lists/k400/classes.txt

With --root, clips that were never downloaded are left out of the list and counted.
See datasets/README.md.
"""
import argparse
import sys

from videoact.datasets import MISSING, AnnotationError, convert_kinetics_csv, summarize_problems

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("csv", help="Kinetics CSV (train.csv, val.csv, test.csv with labels)")
parser.add_argument("out_list", help="the list file to write")
parser.add_argument("--root", help="downloaded videos of this split: keep only the clips found there")
parser.add_argument("--classes", help="fix the label set (the train split's classes.txt)")
parser.add_argument("--classes-out", help="write the sorted label names here (for the train split)")
parser.add_argument("--relative-to", help="write paths relative to this folder above --root "
                    "(e.g. k400/ for k400/train and k400/val, so both lists share one root)")
args = parser.parse_args()
if args.relative_to and not args.root:  # paths would be relative to the CSV's folder, not the videos'
    sys.exit("kinetics_to_list: --relative-to needs --root (the folder of the downloaded videos)")
try:
    result = convert_kinetics_csv(args.csv, args.out_list, root=args.root, classes=args.classes,
                                  classes_out=args.classes_out, relative_to=args.relative_to)
except (AnnotationError, OSError, ValueError) as exc:
    sys.exit(f"kinetics_to_list: {exc}")
missing = [p for p in result.problems if p.kind == MISSING]
print(f"wrote {args.out_list}: {len(result.samples)} clips, {len(result.classes)} classes")
if missing:
    print(f"{len(missing)} clips not found under {args.root} and left out:\n{summarize_problems(missing)}")
