"""Front for `videoact extract` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["extract", *sys.argv[1:]]))
