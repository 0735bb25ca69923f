"""helpers.io: atomic writes and append-only ledgers."""

import pandas as pd
import pytest

from helpers import io


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "x.json"
    io.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert io.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_ledger_appends_with_one_header(tmp_path):
    path = tmp_path / "ledger.csv"
    io.append_csv_row(path, {"a": 1, "b": 2}, ["a", "b"])
    io.append_csv_row(path, {"a": 3}, ["a", "b"])
    frame = pd.read_csv(path)
    assert frame["a"].tolist() == [1, 3] and list(frame.columns) == ["a", "b"]
