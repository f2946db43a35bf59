"""Front for `videoact infer` (see videoact/commands/)."""
import sys

from videoact.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
