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
    with pytest.raises(DataError, match=r"bad.zip is truncated or corrupt \(File is not a zip file\): an "
                                         r"interrupted download looks like this"):
        archives.extract_archive(tmp_path / "bad.zip", tmp_path / "bad")
    evil = _zip(tmp_path / "evil.zip", {"ok.jpg": b"x", "a/../../up.jpg": b"x"})
    with pytest.raises(DataError, match=r"archive member 'a/../../up.jpg' of evil.zip would be written outside"):
        archives.extract_archive(evil, tmp_path / "evil")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "up.jpg").exists()
    assert not list(tmp_path.glob(".*partial"))


def _image_zip(path, root, prefix="pets"):
    """A zip of every image below `root`, under one top folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for p in sorted(root.rglob("*.png")):
            zf.write(p, f"{prefix}/{p.relative_to(root)}")
    return path


def _raw_entries(study_home):
    """Everything under data/raw, hidden entries included (a partial extraction is hidden)."""
    raw = study_home / "data" / "raw"
    return sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*")) if raw.exists() else []


def test_archives_are_keyed_by_content_so_an_update_is_read_afresh_and_names_never_collide(
        make_dataset, tmp_path, study_home):
    from helpers.data import dataset as data
    first = _image_zip(tmp_path / "a" / "images.zip", make_dataset(classes=("cat", "dog"), per_class=3,
                                                                  root=tmp_path / "two"))
    folder = data.resolve_dataset(str(first))
    assert folder.parent == study_home / "data" / "raw" / "archives" and folder.name.startswith("images-")
    assert sorted(p.name for p in (folder / "pets").iterdir()) == ["cat", "dog"]
    assert data.resolve_dataset(str(first)) == folder  # the same bytes: the same folder, not extracted again
    # The user updates images.zip in place with a third class: it is read afresh.
    _image_zip(first, make_dataset(classes=("cat", "dog", "fox"), per_class=3, root=tmp_path / "three"))
    updated = data.resolve_dataset(str(first))
    assert updated != folder and sorted(p.name for p in (updated / "pets").iterdir()) == ["cat", "dog", "fox"]
    # Another images.zip elsewhere, and one named kaggle.zip: their own folders, never the Kaggle downloads'.
    other = _image_zip(tmp_path / "b" / "images.zip", make_dataset(classes=("owl", "bat"), per_class=3,
                                                                   root=tmp_path / "birds"))
    assert data.resolve_dataset(str(other)) not in (folder, updated)
    kaggle = data.resolve_dataset(str(_image_zip(tmp_path / "kaggle.zip", tmp_path / "two")))
    assert not kaggle.is_relative_to(study_home / "data" / "raw" / "kaggle")
    assert not [e for e in _raw_entries(study_home) if ".partial" in e]


def test_an_archive_updated_inside_a_users_folder_is_unpacked_afresh(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    _zip(user / "train.zip", {"train/cat.1.jpg": b"old"})
    copy = archives.working_copy(user, tmp_path / "raw")
    archives.extract_nested(copy)
    assert (copy / "train" / "cat.1.jpg").read_bytes() == b"old"
    _zip(user / "train.zip", {"train/cat.1.jpg": b"new", "train/cat.2.jpg": b"two"})
    assert archives.extract_nested(copy) == [{"archive": "train.zip", "folder": "train"}]
    assert (copy / "train" / "cat.1.jpg").read_bytes() == b"new" and (copy / "train" / "cat.2.jpg").exists()
    assert archives.extract_nested(copy) == []  # unchanged since: nothing to do


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tar"])
def test_a_truncated_archive_is_refused_by_name_before_anything_is_written(suffix, make_dataset, tmp_path,
                                                                           study_home):
    import tarfile

    from helpers.data import dataset as data
    root = make_dataset(per_class=4)
    archive = tmp_path / f"download{suffix}"
    if suffix == ".zip":
        _image_zip(archive, root)
    else:
        with tarfile.open(archive, "w:gz" if suffix == ".tar.gz" else "w") as tf:
            tf.add(root, arcname="pets")
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) * 2 // 3])  # the download was interrupted
    with pytest.raises(DataError, match=rf"^{archive} is truncated or corrupt \(.+\): an interrupted download "
                                        r"looks like this; download or copy it again\. Nothing was extracted\.$"):
        data.resolve_dataset(str(archive))
    assert _raw_entries(study_home) in ([], ["archives"])


def test_a_zip_bomb_is_refused_by_its_ratio_before_anything_is_written(tmp_path, study_home):
    from helpers.data import dataset as data
    bomb = tmp_path / "images.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/1.png", b"\0" * 30_000_000)
    with pytest.raises(DataError, match=r"images.zip member 'cat/1.png' would unpack 30.0 MB from \d+\.\d kB "
                                        r"\(\d+:1\); no image dataset compresses beyond 100:1, so this looks like a "
                                        r"zip bomb and nothing was extracted"):
        data.resolve_dataset(str(bomb))
    assert _raw_entries(study_home) in ([], ["archives"])


def _lying_zip(path, real: int, claimed: int):
    """A zip whose one member holds `real` bytes while both its headers claim `claimed` (a crafted file)."""
    import struct
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/1.png", b"\0" * real)
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = data.index(signature)
        struct.pack_into("<I", data, at + offset, claimed)
    path.write_bytes(bytes(data))
    return path


def test_extraction_stops_at_the_declared_size_whatever_the_data_holds(small_disk, tmp_path, monkeypatch):
    from helpers.data import dataset as data
    home = small_disk("2m") / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    # 8 MB of zeros declared as 4 kB: the ratio check sees 4 kB, the 2 MB disk would fill if it were written on.
    lying = _lying_zip(tmp_path / "images.zip", real=8_000_000, claimed=4000)
    with pytest.raises(DataError, match=r"images.zip is truncated or corrupt \(Bad CRC-32 for file 'cat/1.png'\)"):
        data.resolve_dataset(str(lying))
    assert _raw_entries(home) in ([], ["archives"])


def test_an_archive_larger_than_the_free_space_is_refused_with_both_sizes(small_disk, tmp_path, monkeypatch):
    import os

    from helpers.data import dataset as data
    home = small_disk("2m") / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # incompressible, as photographs are
        for i in range(5):
            zf.writestr(f"cat/{i}.jpg", os.urandom(1_000_000))
    with pytest.raises(DataError, match=rf"^{archive} declares 5.0 MB of contents but the disk holding "
                                        rf"{home}/data/raw/archives has \d\.\d MB free; nothing was extracted — "
                                        "free some space or point STUDY_HOME at a larger disk"):
        data.resolve_dataset(str(archive))
    assert _raw_entries(home) in ([], ["archives"])


def test_a_disk_filled_during_extraction_leaves_no_partial_folder(small_disk, tmp_path, monkeypatch):
    import os

    from helpers.data import dataset as data
    from helpers.utils import files
    home = small_disk("2m") / "home"
    monkeypatch.setenv("STUDY_HOME", str(home))
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(5):
            zf.writestr(f"cat/{i}.jpg", os.urandom(1_000_000))
    # Another program takes the space between the check and the writes: the check sees room, the disk has none.
    monkeypatch.setattr(files, "free_bytes", lambda folder: 10 ** 12)
    with pytest.raises(files.DiskFullError, match=r"^no space left to write images-\w+ in .*/data/raw/archives: "
                                                  r"the disk holding that folder has"):
        data.resolve_dataset(str(archive))
    assert _raw_entries(home) in ([], ["archives"])  # the 2 MB partial extraction is gone


def test_a_killed_extraction_is_never_reused(tmp_path, study_home):
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers.data import dataset as data
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(40):
            zf.writestr(f"pets/cat/{i}.jpg", os.urandom(2_000_000))
    child = subprocess.Popen([sys.executable, "-c", "import sys; from helpers.data import dataset as d; "
                              "d.resolve_dataset(sys.argv[1])", str(archive)], env={**os.environ})
    archives_dir = study_home / "data" / "raw" / "archives"
    deadline = time.time() + 60
    while time.time() < deadline and not any(".partial" in p.name for p in archives_dir.glob(".*")):
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert any(".partial" in p.name for p in archives_dir.glob(".*")), "the child finished before it was killed"
    folder = data.resolve_dataset(str(archive))
    assert len(list((folder / "pets" / "cat").iterdir())) == 40
    assert not [p for p in archives_dir.iterdir() if ".partial" in p.name]  # the killed one's leftovers are gone
