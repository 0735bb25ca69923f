"""Entry point: `python -m helpers.index [ru|en]` rebuilds reports/index.md (the code is helpers/reporting/index.py)."""

import sys

from helpers.reporting.index import main

if __name__ == "__main__":
    sys.exit(main())
