"""Archives: extract a .zip or .tar(.gz) into a folder keyed by its content, atomically, after checking it.

Before a byte is written an archive is read whole enough to know it is complete (a truncated download is
refused), its members are checked (none may escape the folder, no links), its declared size must fit the disk
and its compression ratio must be one an image dataset can have (a zip bomb is refused). Extraction goes to a
temporary folder renamed into place when complete, so a killed extraction is never mistaken for a whole one,
and no member may write more than its header declared. Archives inside archives are unpacked beside themselves.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Iterator

from helpers.data.errors import DataError
from helpers.utils import files

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
MAX_NESTING = 3  # train.zip inside a download inside a zip is the deepest Kaggle gets
MAX_RATIO = 100  # JPEG/PNG barely compress, raw BMP/TIFF a few times; deflate's ceiling (~1000:1) is a bomb
SMALL = 10 * 1000 ** 2  # contents this small cannot hurt, whatever their ratio
MARKER = ".archive.json"  # inside an extracted folder: which archive (content hash) it holds
CHUNK = 1 << 20
# What a damaged archive raises while it is read (gzip.BadGzipFile is an OSError, zlib.error is not).
DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


def is_hidden(rel: PurePosixPath | str) -> bool:
    """True for dot files and folders, __MACOSX and similar debris anywhere in the path."""
    return any(part.startswith((".", "__")) for part in PurePosixPath(rel).parts)


def is_archive(path: Path) -> bool:
    """True for a file whose name ends in one of the archive suffixes we extract."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """An archive's name without the suffix (train.zip → train)."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def content_digest(archive: Path) -> str:
    """SHA-256 of an archive's bytes."""
    digest = hashlib.sha256()
    with Path(archive).open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Member:
    """One entry of an archive as its headers declare it."""

    name: str
    size: int
    is_dir: bool
    packed: int  # compressed bytes (zip); the uncompressed size for tar, whose members are stored as they are


def _unreadable(archive: Path, exc: BaseException) -> DataError:
    """The sentence for an archive that cannot be read to its end."""
    why = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    return DataError(f"{archive} is truncated or corrupt ({why}): an interrupted download looks like this; "
                     "download or copy it again. Nothing was extracted.")


def _zip_members(archive: Path) -> list[Member]:
    """The zip's members from its central directory (a truncated zip has none and is refused)."""
    with zipfile.ZipFile(archive) as zf:
        return [Member(i.filename, i.file_size, i.is_dir(), i.compress_size) for i in zf.infolist()]


def _tar_members(archive: Path) -> list[Member]:
    """The tar's members, read to its end (a truncated .tar.gz fails here, before anything is written)."""
    size = archive.stat().st_size
    out = []
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            if m.issym() or m.islnk():
                raise DataError(f"archive member {m.name!r} of {archive.name} is a link; "
                                "the archive is unsafe and nothing was extracted.")
            if archive.name.lower().endswith(".tar") and m.isfile() and m.offset_data + m.size > size:
                raise _unreadable(archive, EOFError(f"member {m.name!r} ends past the end of the file"))
            if m.isfile() or m.isdir():
                out.append(Member(m.name, m.size, m.isdir(), m.size))
    return out


def list_members(archive: Path) -> list[Member]:
    """Every member of a .zip or .tar(.gz); one sentence naming the archive when it is truncated or corrupt."""
    try:
        return _zip_members(archive) if archive.name.lower().endswith(".zip") else _tar_members(archive)
    except (*DAMAGED, OSError, ValueError) as exc:  # reading only: every failure means a damaged file
        if isinstance(exc, DataError):
            raise
        raise _unreadable(archive, exc) from None


def _safe_member(target: Path, name: str, archive: Path) -> None:
    """Refuse a member that would land outside `target` (absolute, drive-letter or ../ paths)."""
    dest = (target / name).resolve()
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or not dest.is_relative_to(target.resolve()):
        raise DataError(f"archive member {name!r} of {archive.name} would be written outside the folder it is "
                        f"unpacked into ({archive_stem(archive)}/); the archive is unsafe and nothing was extracted.")


def check_archive(archive: Path, target: Path) -> list[Member]:
    """Everything that can be known before writing: readable to its end, safe names, a sane ratio, room on disk."""
    members = list_members(archive)
    for m in members:
        _safe_member(target, m.name, archive)
    declared = sum(m.size for m in members)
    packed = archive.stat().st_size
    bomb = next((m for m in members if m.size > SMALL and m.size > MAX_RATIO * max(1, m.packed)), None)
    if declared > SMALL and (declared > MAX_RATIO * max(1, packed) or bomb):
        what = f"member {bomb.name!r} " if bomb else ""
        size, of = (bomb.size, bomb.packed) if bomb else (declared, packed)
        raise DataError(f"{archive} {what}would unpack {files.human_bytes(size)} from {files.human_bytes(of)} "
                        f"({size / max(1, of):.0f}:1); no image dataset compresses beyond {MAX_RATIO}:1, so this "
                        "looks like a zip bomb and nothing was extracted — if it is genuine, unpack it yourself "
                        "and give the folder as dataset=<folder>.")
    need = declared + 4096 * len(members)  # every file takes at least a block
    free = files.free_bytes(target.parent)
    if need > free:
        raise DataError(f"{archive} declares {files.human_bytes(declared)} of contents but the disk holding "
                        f"{target.parent} has {files.human_bytes(free)} free; nothing was extracted — free some "
                        "space or point STUDY_HOME at a larger disk, then run again.")
    return members


def _streams(archive: Path) -> Iterator[tuple[str, int, IO[bytes] | None]]:
    """Each member's name, declared size and a stream of its bytes (None for a folder), in archive order."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    yield info.filename, 0, None
                else:
                    with zf.open(info) as src:
                        yield info.filename, info.file_size, src
        return
    with tarfile.open(archive) as tf:
        for m in tf:
            if m.isdir():
                yield m.name, 0, None
            elif m.isfile():  # links were refused by the check; devices and fifos are no dataset's files
                with tf.extractfile(m) as src:
                    yield m.name, m.size, src


def _copy(src: IO[bytes], dest: Path, declared: int, archive: Path, name: str) -> None:
    """Copy one member, never more than its declared size, and refuse one whose bytes disagree with it."""
    left = declared
    with dest.open("wb") as out:
        while left > 0:
            block = src.read(min(CHUNK, left))
            if not block:
                raise _unreadable(archive, EOFError(f"member {name!r} ends after {declared - left} of its "
                                                    f"{declared} declared bytes"))
            out.write(block)
            left -= len(block)
    if src.read(1):
        raise DataError(f"archive member {name!r} of {archive} holds more than the {declared} bytes its header "
                        "declares; the archive is corrupt or malicious and nothing was extracted.")


def _extract_into(archive: Path, tmp: Path, members: list[Member]) -> None:
    """Write every checked member below `tmp`, each stopped at its declared size, all at the declared total."""
    left = sum(m.size for m in members)
    tmp.mkdir(parents=True)
    for name, size, src in _streams(archive):
        dest = tmp / name
        if src is None:
            dest.mkdir(parents=True, exist_ok=True)
            continue
        if size > left:
            raise DataError(f"{archive} holds more than the {sum(m.size for m in members)} bytes its directory "
                            "declares; the archive is corrupt or malicious and nothing was extracted.")
        left -= size
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy(src, dest, size, archive, name)


def _stamp(archive: Path) -> dict:
    """What identifies an archive's version cheaply: its size and modification time."""
    st = archive.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def extracted_from(target: Path, archive: Path, digest: str | None = None) -> bool | None:
    """Whether `target` holds this very archive's contents (None: a folder that no extraction of ours made).

    The archive is hashed again only when its size or modification time differ from the recorded ones.
    """
    marker = target / MARKER
    if not marker.is_file():
        return None
    recorded = files.read_json(marker)
    if digest is None and {k: recorded.get(k) for k in ("size", "mtime_ns")} == _stamp(archive):
        return True
    return recorded.get("sha256") == (digest or content_digest(archive))


def extract_archive(archive: Path, target: Path, hoist: bool = False, digest: str | None = None) -> Path:
    """Extract a .zip or .tar(.gz) into `target` after checking it; reuse `target` when it already holds it.

    A folder extracted from an older version of the archive is replaced (atomically); a folder our extraction
    did not make (no marker inside) is left as it is. With `hoist`, an archive whose only entry is a folder
    named like `target` (train.zip holding train/) lands in `target` itself, not in target/train.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir() and not target.is_symlink():
        same = extracted_from(target, archive, digest)
        if same or (same is None and any(target.iterdir())):
            return target
    clear_leftovers(target)
    members = check_archive(archive, target)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        _extract_into(archive, tmp, members)
        files.write_json(tmp / MARKER, {"archive": archive.name, "sha256": digest or content_digest(archive),
                                        **_stamp(archive)})
        _put_in_place(tmp, target, hoist)
    except files.DiskFullError:
        raise
    except DAMAGED as exc:  # a member whose bytes or checksum do not hold up
        raise _unreadable(archive, exc) from None
    except OSError as exc:
        if files.disk_full_cause(exc) is not None:
            raise files.DiskFullError(target) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def clear_leftovers(target: Path) -> None:
    """Remove the partial extractions (and replaced folders) that killed processes left beside `target`."""
    if not target.parent.is_dir():
        return
    for entry in target.parent.glob(f".{target.name}.*-*"):
        kind, _, pid = entry.name[len(target.name) + 2:].rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process of that id runs (ours counts as dead: its own leftovers are from an earlier attempt)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _put_in_place(tmp: Path, target: Path, hoist: bool) -> None:
    """Rename the complete extraction to `target` (an older one moved aside first, then removed)."""
    source = tmp
    entries = [p for p in tmp.iterdir() if not is_hidden(p.name)]
    if hoist and len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() == target.name.lower():
        source = entries[0]
        os.replace(tmp / MARKER, source / MARKER)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    source.rename(target)
    files.fsync_folder(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def extract_keyed(archive: Path, parent: Path) -> Path:
    """Extract an archive into parent/<name>-<content hash>: an updated archive gets a new folder, equal names
    of different archives never share one, and a second run finds the same folder again."""
    digest = content_digest(archive)
    return extract_archive(archive, Path(parent) / f"{archive_stem(archive)}-{digest[:12]}", digest=digest)


def _archives_below(folder: Path) -> list[Path]:
    """Visible archive files anywhere below `folder`, shallowest first."""
    found = []
    # Links lead into a user's own folder (see working_copy): never follow them, never unpack there.
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        found += [Path(dirpath, f) for f in sorted(filenames) if not is_hidden(f) and is_archive(Path(f))]
    return found


def extract_nested(folder: Path) -> list[dict]:
    """Unpack every archive below `folder` beside itself (train.zip → train/), to MAX_NESTING levels.

    An archive changed since it was unpacked is unpacked afresh. Returns what was unpacked, relative to
    `folder`, for the layout explanation.
    """
    done: list[dict] = []
    seen: set[Path] = set()
    for _ in range(MAX_NESTING):
        fresh = [a for a in _archives_below(folder) if a not in seen]
        if not fresh:
            break
        for archive in fresh:
            seen.add(archive)
            target = archive.with_name(archive_stem(archive))
            if target.exists() and (not target.is_dir() or target.is_symlink()):
                continue  # a file, or the user's own folder of that name, is in the way: left as it is
            same = extracted_from(target, archive) if target.is_dir() else False
            if same or (same is None and any(target.iterdir())):
                continue  # unpacked by an earlier run from this very archive (or the dataset's own folder)
            extract_archive(archive, target, hoist=True)
            done.append({"archive": archive.relative_to(folder).as_posix(),
                         "folder": target.relative_to(folder).as_posix()})
    return done


def working_copy(folder: Path, raw: Path) -> Path:
    """A folder to unpack a user's nested archives in, leaving the user's own folder untouched.

    The copy holds links to the folder's entries, so nothing large is copied; archives are unpacked
    beside those links. Returns `folder` itself when it holds no archive at its top level.
    """
    tops = [p for p in sorted(folder.iterdir()) if not is_hidden(p.name)]
    if not any(p.is_file() and is_archive(p) for p in tops):
        return folder
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:10]
    copy = raw / "unpacked" / f"{folder.name}-{digest}"
    copy.mkdir(parents=True, exist_ok=True)
    for entry in tops:
        link = copy / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return copy
