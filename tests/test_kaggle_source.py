"""helpers.kaggle_source: preflight, every HTTP failure as one sentence, download once; never the network."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from helpers.data import dataset as data
from helpers.data import kaggle as kaggle_source
from helpers.data.errors import DataError
from helpers.data.kaggle import KaggleError


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home-user"))


class FakeApi:
    """Stands in for KaggleApi at its boundary: fails with a status, or writes a zip."""

    def __init__(self, status=None, source=None):
        self.status, self.source, self.calls = status, source, 0

    def _download(self, path):
        self.calls += 1
        if self.status:
            response = requests.Response()
            response.status_code = self.status
            raise requests.HTTPError(f"{self.status} Client Error", response=response)
        with zipfile.ZipFile(f"{path}/pets.zip", "w") as zf:
            for p in self.source.rglob("*.png"):
                zf.write(p, f"pets/{p.relative_to(self.source)}")

    def dataset_download_files(self, name, path, quiet, unzip):
        self._download(path)

    def competition_download_files(self, name, path, quiet):
        self._download(path)


def test_no_credentials_says_where_to_put_kaggle_json(no_credentials):
    with pytest.raises(KaggleError, match=r"no Kaggle credentials.*~/.kaggle/kaggle.json.*chmod 600"):
        data.resolve_dataset("kaggle:zalando-research/fashionmnist")


@pytest.mark.parametrize("status,message", [
    (401, "401 — the API token is invalid or expired"),
    (403, "403 — access denied; accept the competition's rules"),
    (404, "404 — no such competition"),
])
def test_http_failures_become_one_sentence(status, message, monkeypatch, study_home):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret-key-123")
    monkeypatch.setattr(kaggle_source, "_make_api", lambda: FakeApi(status))
    with pytest.raises(KaggleError, match=message) as err:
        data.resolve_dataset("kaggle-competition:dogs-vs-cats")
    assert "secret-key-123" not in str(err.value)
    assert not kaggle_source.target_dir("kaggle-competition:dogs-vs-cats").exists()


def test_download_once_then_reuse(monkeypatch, tmp_path, make_dataset):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    api = FakeApi(source=make_dataset(per_class=4))
    monkeypatch.setattr(kaggle_source, "_make_api", lambda: api)
    root = data.resolve_dataset("kaggle:owner/pets")
    assert data.prepare_split(root)[1]["n_images"] == 12
    assert data.resolve_dataset("kaggle:owner/pets") == root and api.calls == 1


def test_bad_spec():
    with pytest.raises(KaggleError, match="write kaggle:<owner>/<dataset>"):
        kaggle_source.parse("kaggle:fashionmnist")


def test_importing_helpers_never_imports_kaggle():
    code = ("import sys, helpers.data.dataset, helpers.pipeline, helpers.data.kaggle, helpers.training.cycle, helpers.reporting.report; "
            "assert 'kaggle' not in sys.modules, 'kaggle imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_interrupted_kaggle_download_is_refused_by_name_and_not_kept(monkeypatch, make_dataset):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")

    class Interrupted(FakeApi):
        def _download(self, path):
            super()._download(path)
            archive = Path(path) / "pets.zip"
            archive.write_bytes(archive.read_bytes()[:-200])  # the connection dropped near the end

    api = Interrupted(source=make_dataset(per_class=4))
    monkeypatch.setattr(kaggle_source, "_make_api", lambda: api)
    with pytest.raises(DataError, match=r"pets.zip is truncated or corrupt \(.+\): an interrupted download looks "
                                        r"like this; download or copy it again"):
        data.resolve_dataset("kaggle:owner/pets")
    target = kaggle_source.target_dir("kaggle:owner/pets")
    assert not target.exists() and not target.with_name(target.name + ".partial").exists()
    # The next attempt downloads again (nothing half-done was taken for a finished download).
    monkeypatch.setattr(kaggle_source, "_make_api", lambda: FakeApi(source=api.source))
    assert data.prepare_split(data.resolve_dataset("kaggle:owner/pets"))[1]["n_images"] == 12
