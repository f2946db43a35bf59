"""Front for `videoact make-synthetic` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-synthetic", *sys.argv[1:]]))
