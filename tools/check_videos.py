"""Front for `videoact check` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["check", *sys.argv[1:]]))
