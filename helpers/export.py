"""Entry point: `python -m helpers.export --run-id ID --format onnx|torchscript` (the code is helpers/evaluation/export.py)."""

import sys

from helpers.evaluation.export import main

if __name__ == "__main__":
    sys.exit(main())
