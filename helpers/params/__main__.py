"""`python -m helpers.params`: print the README's parameter table."""

import sys

from helpers.params.schema import markdown_table

sys.stdout.write(markdown_table() + "\n")
