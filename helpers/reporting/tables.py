"""Tables as a notebook shows them: an empty one is a sentence saying so, not a header over nothing."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd


class Note:
    """A line of text a notebook shows as Markdown, and as the same words where only plain text is read (a log)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def table(rows: Sequence[Any], columns: list[str], empty: str) -> pd.DataFrame | Note:
    """`rows` as a DataFrame with `columns`, or the sentence `empty` (in italics) when there are none."""
    if len(rows) == 0:
        return Note(f"*{empty}*")
    return pd.DataFrame(list(rows), columns=columns)
