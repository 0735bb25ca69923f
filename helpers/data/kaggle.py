"""Download a Kaggle dataset or competition once into data/raw, with one clear sentence for every failure.

The `kaggle` package authenticates when imported, so it is imported here lazily, only for a download.
Credentials are never printed, logged or recorded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from helpers.data.archives import extract_archive, extract_nested
from helpers.data.errors import DataError
from helpers.utils import paths

DONE_MARKER = ".download-complete"


class KaggleError(DataError):
    """A Kaggle download that cannot happen; the message says why and what to do."""


def parse(spec: str) -> tuple[str, str]:
    """Split 'kaggle:owner/slug' or 'kaggle-competition:name' into (kind, name)."""
    kind, _, name = spec.partition(":")
    name = name.strip().strip("/")
    if kind == "kaggle" and name.count("/") == 1 and all(name.split("/")):
        return "dataset", name
    if kind == "kaggle-competition" and name and "/" not in name:
        return "competition", name
    raise KaggleError(f"dataset={spec!r}: write kaggle:<owner>/<dataset> (as in the dataset's URL) or "
                      "kaggle-competition:<name>.")


def has_credentials() -> bool:
    """True when the kaggle package will find an API token or a username and key."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return any((folder / name).is_file() for name in ("kaggle.json", "access_token", "access_token.txt"))


def target_dir(spec: str) -> Path:
    """Where a Kaggle dataset or competition is stored locally."""
    kind, name = parse(spec)
    return paths.raw_dir() / "kaggle" / kind / name.replace("/", "__")


def _make_api() -> Any:
    """An authenticated KaggleApi (imports the kaggle package)."""
    from kaggle.api.kaggle_api_extended import KaggleApi
    api = KaggleApi()
    api.authenticate()
    return api


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an exception raised by the kaggle client, if any."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) or getattr(exc, "status", None)


def _explain(spec: str, kind: str, name: str, exc: BaseException) -> KaggleError:
    """Turn the client's exception into one sentence."""
    status = _status(exc)
    if status == 401:
        return KaggleError(f"{spec}: Kaggle answered 401 — the API token is invalid or expired; create a new one "
                           "(Kaggle → Settings → API → Create New Token) and replace ~/.kaggle/kaggle.json.")
    if status == 403:
        what = (f"accept the competition's rules at kaggle.com/competitions/{name}/rules"
                if kind == "competition" else "check that the dataset is public or shared with your account")
        return KaggleError(f"{spec}: Kaggle answered 403 — access denied; {what}, then run again.")
    if status == 404:
        return KaggleError(f"{spec}: Kaggle answered 404 — no such {kind}; check the name in its URL "
                           f"(kaggle.com/{'datasets/' + name if kind == 'dataset' else 'competitions/' + name}).")
    if isinstance(exc, (ConnectionError, OSError)) or "Connection" in type(exc).__name__:
        return KaggleError(f"{spec}: Kaggle cannot be reached ({type(exc).__name__}); check the network, or "
                           "download the archive by hand and pass its path as dataset=<file.zip>.")
    return KaggleError(f"{spec}: the Kaggle download failed ({type(exc).__name__}"
                       f"{f', HTTP {status}' if status else ''}).")


def preflight(spec: str) -> None:
    """Fail in seconds, before any run file is written, when a download is needed but cannot authenticate."""
    parse(spec)
    if (target_dir(spec) / DONE_MARKER).exists() or has_credentials():
        return
    raise KaggleError(f"{spec}: no Kaggle credentials found. Create a token at Kaggle → Settings → API → "
                      "Create New Token, save kaggle.json as ~/.kaggle/kaggle.json and run "
                      "'chmod 600 ~/.kaggle/kaggle.json' (or set KAGGLE_USERNAME and KAGGLE_KEY).")


def download(spec: str) -> Path:
    """Download (once) and unpack a Kaggle dataset or competition; return its folder."""
    kind, name = parse(spec)
    target = target_dir(spec)
    if (target / DONE_MARKER).exists():
        return target
    preflight(spec)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        api = _make_api()
        if kind == "dataset":
            api.dataset_download_files(name, path=str(partial), quiet=False, unzip=False)
        else:
            api.competition_download_files(name, path=str(partial), quiet=False)
    except SystemExit as exc:  # the client exits when it finds no usable credentials
        shutil.rmtree(partial, ignore_errors=True)
        raise KaggleError(f"{spec}: the kaggle client rejected the credentials; check ~/.kaggle/kaggle.json "
                          "or KAGGLE_USERNAME / KAGGLE_KEY.") from exc
    except Exception as exc:  # noqa: BLE001 - every client failure becomes one sentence
        shutil.rmtree(partial, ignore_errors=True)
        raise _explain(spec, kind, name, exc) from exc
    try:  # a truncated download, a bomb or a full disk: one sentence, and no half download kept
        for archive in sorted(partial.glob("*.zip")):
            extract_archive(archive, partial / archive.name[:-4])  # checked first: readable, safe, fits
            archive.unlink()
        extract_nested(partial)  # competitions ship train.zip / test1.zip inside the download
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / DONE_MARKER).write_text(spec + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
