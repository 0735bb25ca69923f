"""Entry point: `python -m helpers.predict --run-id ID IMAGES [--top-k K]` (the code is helpers/evaluation/predict.py)."""

import sys

from helpers.evaluation.predict import main

if __name__ == "__main__":
    sys.exit(main())
