"""Front for `videoact stream` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
