"""Front for `videoact train` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
