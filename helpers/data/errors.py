"""The one error type of the data stages, so every stage can raise it without importing the others."""

from __future__ import annotations


class DataError(ValueError):
    """The dataset cannot be used as given; the message names the culprit and what to do."""
