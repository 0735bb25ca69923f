"""helpers.archives: extracted once, nested archives unpacked beside themselves, escaping members refused."""

from __future__ import annotations

import zipfile

import pytest

from helpers.data import archives
from helpers.data.errors import DataError


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_nested_archives_unpack_beside_themselves(tmp_path):
    _zip(tmp_path / "train.zip", {"train/cat.1.jpg": b"a"})  # a top folder named like the archive: hoisted
    _zip(tmp_path / "test1.zip", {"1.jpg": b"b"})  # no top folder
    outer = _zip(tmp_path / "download.zip", {"train.zip": (tmp_path / "train.zip").read_bytes(),
                                             "test1.zip": (tmp_path / "test1.zip").read_bytes()})
    folder = archives.extract_archive(outer, tmp_path / "out" / "download")
    done = archives.extract_nested(folder)
    assert done == [{"archive": "test1.zip", "folder": "test1"}, {"archive": "train.zip", "folder": "train"}]
    assert (folder / "train" / "cat.1.jpg").read_bytes() == b"a" and (folder / "test1" / "1.jpg").exists()
    assert archives.extract_nested(folder) == []  # a second run finds everything unpacked


def test_a_users_folder_is_never_written_to(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    _zip(user / "train.zip", {"train/cat.1.jpg": b"a"})
    (user / "notes.txt").write_text("keep")
    copy = archives.working_copy(user, tmp_path / "raw")
    archives.extract_nested(copy)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt", "train.zip"]
    assert (copy / "train" / "cat.1.jpg").exists() and (copy / "notes.txt").read_text() == "keep"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert archives.working_copy(plain, tmp_path / "raw") == plain


def test_broken_and_escaping_archives_write_nothing(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError, match=r"bad.zip is not a readable archive"):
        archives.extract_archive(tmp_path / "bad.zip", tmp_path / "bad")
    evil = _zip(tmp_path / "evil.zip", {"ok.jpg": b"x", "a/../../up.jpg": b"x"})
    with pytest.raises(DataError, match=r"archive member 'a/../../up.jpg' of evil.zip would be written outside"):
        archives.extract_archive(evil, tmp_path / "evil")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "up.jpg").exists()
    assert not list(tmp_path.glob(".*partial"))
