import sys
from videoact.cli import main
sys.exit(main(["decode-frames", *sys.argv[1:]]))
