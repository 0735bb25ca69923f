"""helpers.ledger: rows are appended, the contract's columns come first, one test cell changes at a time."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.training import ledger


def test_append_fill_and_drop(tmp_path):
    for n in (1, 2):
        ledger.append_cycle(tmp_path, {"cycle": n, "best_val_accuracy": 0.5 + n / 10, "init_from": n - 1 or ""})
        for e in (1, 2, 3):
            ledger.append_history(tmp_path, {"cycle": n, "epoch": e})
    first = (tmp_path / "cycles.csv").read_text().splitlines()[1]
    ledger.fill_test_accuracy(tmp_path, 2, 0.75)
    frame = pd.read_csv(tmp_path / "cycles.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns) == ledger.CYCLE_COLUMNS and frame["test_accuracy"].tolist() == ["", "0.75000"]
    assert (tmp_path / "cycles.csv").read_text().splitlines()[1] == first
    assert ledger.recorded_cycles(tmp_path) == {1, 2}
    ledger.drop_history_after(tmp_path, 2, 1)
    assert ledger.read_history(tmp_path)[["cycle", "epoch"]].values.tolist() == [[1, 1], [1, 2], [1, 3], [2, 1]]
    with pytest.raises(ledger.LedgerError, match="no row for cycle 5"):
        ledger.fill_test_accuracy(tmp_path, 5, 0.1)
