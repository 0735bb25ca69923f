"""helpers.runinfo: params.json keeps every notebook's parameters, versions and the commit."""

from helpers import io, paths, runinfo


def test_record_merges_notebooks():
    runinfo.record("r1", "02_data", {"dataset": "sample"})
    path = runinfo.record("r1", "03_train", {"epochs": 2}, device="cpu")
    data = io.read_json(path)
    assert path == paths.run_dir("r1") / "params.json"
    assert data["notebooks"]["02_data"]["parameters"] == {"dataset": "sample"}
    assert data["notebooks"]["03_train"]["resolved"] == {"device": "cpu"}
    assert data["versions"]["torch"].startswith("2.")
    assert data["git_commit"]
