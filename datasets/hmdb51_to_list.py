"""Convert HMDB51's official split files (<class>_test_split<N>.txt) into videoact lists.

    python datasets/hmdb51_to_list.py testTrainMulti_7030_splits/ lists/hmdb51 --root hmdb51_org/

writes lists/hmdb51/{classes.txt, train_split1.txt, test_split1.txt, ...}; with --root,
checks that every listed video is there. See datasets/README.md.
"""
import argparse
import os
import sys

from videoact.datasets import AnnotationError, check_lists, summarize_problems, convert_hmdb51_splits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("split_dir", help="folder with the 153 <class>_test_split<N>.txt files")
parser.add_argument("out_dir", help="where the videoact lists are written")
parser.add_argument("--root", help="the video folder (<class>/<video>.avi): check that every listed video exists")
args = parser.parse_args()
if args.root and not os.path.isdir(args.root):  # before writing anything
    sys.exit(f"hmdb51_to_list: --root {args.root}: no such folder")
try:
    written = convert_hmdb51_splits(args.split_dir, args.out_dir)
except (AnnotationError, OSError) as exc:
    sys.exit(f"hmdb51_to_list: {exc}")
print("\n".join(f"wrote {p}" for p in written))
problems = check_lists(written, args.root) if args.root else []
if problems:
    print(f"{len(problems)} problems under {args.root}:\n{summarize_problems(problems)}", file=sys.stderr)
sys.exit(1 if problems else 0)
