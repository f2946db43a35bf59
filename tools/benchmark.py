"""Front for the benchmark (see videoact/benchmark.py): python tools/benchmark.py [--quick] [--json FILE] [--device cpu|cuda]."""
import sys

from videoact.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
