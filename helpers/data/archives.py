"""Archives: extract a .zip or .tar(.gz) once, refuse members that escape, and unpack archives inside archives."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from helpers.data.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
MAX_NESTING = 3  # train.zip inside a download inside a zip is the deepest Kaggle gets


def is_hidden(rel: PurePosixPath | str) -> bool:
    """True for dot files and folders, __MACOSX and similar debris anywhere in the path."""
    return any(part.startswith((".", "__")) for part in PurePosixPath(rel).parts)


def is_archive(path: Path) -> bool:
    """True for a file whose name ends in one of the archive suffixes we extract."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """Folder name for an archive's contents: its name without the suffix, so a second run finds it again."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_member(target: Path, name: str, archive: Path) -> None:
    """Refuse a member that would land outside `target` (absolute, drive-letter or ../ paths)."""
    dest = (target / name).resolve()
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or not dest.is_relative_to(target.resolve()):
        raise DataError(f"archive member {name!r} of {archive.name} would be written outside the folder it is "
                        f"unpacked into ({target.name.removeprefix('.').removesuffix('.partial')}/); "
                        "the archive is unsafe and nothing was extracted.")


def _extract_into(archive: Path, tmp: Path) -> None:
    """Check every member first, then extract: an unsafe archive writes nothing."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _safe_member(tmp, name, archive)
            zf.extractall(tmp)
        return
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            _safe_member(tmp, member.name, archive)
            if member.issym() or member.islnk():
                raise DataError(f"archive member {member.name!r} of {archive.name} is a link; "
                                "the archive is unsafe and nothing was extracted.")
    tf.extractall(tmp, filter="data")


def extract_archive(archive: Path, target: Path, hoist: bool = False) -> Path:
    """Extract a .zip or .tar(.gz) into `target` once, refusing members that escape it.

    With `hoist`, an archive whose only entry is a folder named like `target` (train.zip holding train/)
    lands in `target` itself, not in target/train.
    """
    if target.exists() and any(target.iterdir()):
        return target
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _extract_into(archive, tmp)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive.name} is not a readable archive ({exc}); download it again.") from exc
    except DataError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    source = tmp
    entries = [p for p in tmp.iterdir() if not is_hidden(p.name)]
    if hoist and len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() == target.name.lower():
        source = entries[0]
    shutil.rmtree(target, ignore_errors=True)
    source.rename(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


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

    Returns what was unpacked, relative to `folder`, for the layout explanation.
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
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                continue  # unpacked by an earlier run (or a file of that name is in the way)
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
