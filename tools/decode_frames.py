"""Front for `videoact decode-frames` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["decode-frames", *sys.argv[1:]]))
