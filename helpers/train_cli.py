"""Entry point: one 03 training cycle, the module torchrun starts on every rank (the code is helpers/training/cli.py)."""

import sys

from helpers.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
