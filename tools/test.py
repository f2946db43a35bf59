"""Front for `videoact test` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["test", *sys.argv[1:]]))
