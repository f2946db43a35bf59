"""Front for `videoact demo` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
