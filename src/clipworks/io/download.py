"""Downloading one file into the cache, carefully: verified, resumable, atomic, once.

`fetch(url, dest, sha256=...)` returns `dest` when it holds the verified file, downloading it first if needed:
- the bytes stream into `.NAME.part` beside `dest`, SHA-256 computed on the way, and only a file whose hash matches is
  renamed to `dest` (atomic); a mismatch deletes the part and says both hashes;
- a cut download keeps its part, and the next call resumes it with an HTTP Range request (a server that ignores the
  range restarts it from zero);
- a lock file beside `dest` (flock) makes concurrent callers, e.g. the ranks of a torchrun job sharing a cache, wait
  for the one that downloads and then use its file: a file is never downloaded twice;
- a progress bar (size, speed) on stderr;
- `CLIPWORKS_MIRROR=BASE_URL` fetches every URL from BASE_URL + the same path (a mirror of OpenAI's server on an
  air-gapped network); `CLIPWORKS_OFFLINE=1` (or `HF_HUB_OFFLINE=1`) never touches the network, and a file missing
  from the cache is an error naming the file to place and where.
A verified file gets a `.NAME.sha256` note (hash, size, mtime) so later loads skip re-hashing gigabytes; a file that
changed since is hashed again. Network faults become one DownloadError naming the URL and how to fetch it by hand; a
full disk a DiskFullError, with the part deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from ..errors import ClipworksError, DiskFullError
from .files import full_disk_is_one_error, write_text_atomic

CHUNK = 1 << 20
TIMEOUT = 30.0  # seconds without a byte before a connection counts as lost
_TRUE = {"1", "true", "yes", "on"}


class DownloadError(ClipworksError):
    """A file that could not be fetched or did not verify; the message says what to do instead."""


def offline() -> bool:
    """True when CLIPWORKS_OFFLINE or HF_HUB_OFFLINE is set: nothing may touch the network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("CLIPWORKS_OFFLINE", "HF_HUB_OFFLINE"))


def mirrored(url: str) -> str:
    """`url` as fetched: from $CLIPWORKS_MIRROR + the same path when that is set, else unchanged."""
    mirror = os.environ.get("CLIPWORKS_MIRROR", "").strip()
    return mirror.rstrip("/") + urlsplit(url).path if mirror else url


def _note(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.sha256")


def _part(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.part")


def _stamp(dest: Path) -> str:
    st = dest.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def _remember(dest: Path, sha256: str) -> None:
    """Note that `dest`, as it is now (size, mtime), holds the file with this SHA-256."""
    write_text_atomic(_note(dest), f"{sha256} {_stamp(dest)}\n")


def _hash_file(path: Path, *, progress: bool, what: str) -> Any:
    """The SHA-256 of the file so far (a hashlib object: a resumed download goes on updating it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"verifying {what}", disable=not progress, leave=False) as bar:
        while block := f.read(CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest


def verified(dest: Path, sha256: str | None, *, progress: bool = True) -> bool:
    """True when `dest` exists and holds the file with this SHA-256 (any file when `sha256` is None). A file that
    fails is deleted, with its note."""
    if not dest.is_file():
        return False
    if sha256 is None:
        return True
    note = _note(dest)
    if note.is_file() and note.read_text().split() == [sha256, *_stamp(dest).split()]:
        return True
    actual = _hash_file(dest, progress=progress, what=dest.name).hexdigest()
    if actual == sha256:
        _remember(dest, sha256)
        return True
    print(f"{dest}: SHA-256 {actual} is not the expected {sha256}; deleted it", file=sys.stderr)
    dest.unlink()
    note.unlink(missing_ok=True)
    return False


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on `dest`'s lock file: other processes block here until the holder is done."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.with_name(f".{dest.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def by_hand(url: str, dest: Path) -> str:
    return f"fetch it by hand (curl -L -o {dest} {url}) and place it at {dest}, or set CLIPWORKS_MIRROR to a mirror"


def fetch(url: str, dest: str | Path, *, sha256: str | None = None, progress: bool = True,
          timeout: float = TIMEOUT) -> Path:
    """`dest`, holding the verified file from `url` (mirrored), downloaded into the cache only if not there yet."""
    dest = Path(dest)
    if verified(dest, sha256, progress=progress):
        return dest
    source = mirrored(url)
    if offline():
        expected = f" (SHA-256 {sha256})" if sha256 else ""
        raise DownloadError(f"offline mode (CLIPWORKS_OFFLINE/HF_HUB_OFFLINE) and {dest.name} is not in the cache: "
                            f"download {source}{expected} on a connected machine and place it at {dest}")
    with _locked(dest):
        if not verified(dest, sha256, progress=progress):  # another process may have finished it while we waited
            _download(source, dest, sha256, progress=progress, timeout=timeout)
    return dest


def _open(url: str, start: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "clipworks", **({"Range": f"bytes={start}-"}
                                                                                 if start else {})})
    return urllib.request.urlopen(request, timeout=timeout)  # follows redirects; HTTPError for 4xx/5xx


def _download(url: str, dest: Path, sha256: str | None, *, progress: bool, timeout: float) -> None:
    part = _part(dest)
    start = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the part already holds every byte: verify it as it is
            response = None
        else:
            raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}; {by_hand(url, dest)}") from None
    except (urllib.error.URLError, OSError) as e:  # no network, refused, DNS, timeout
        reason = getattr(e, "reason", e)
        raise DownloadError(f"could not download {url}: {reason}; {by_hand(url, dest)}") from None
    if response is not None and response.status != 206:  # a fresh download, or a server that ignores Range
        start = 0
    digest = _hash_file(part, progress=progress, what=part.name) if start else hashlib.sha256()
    if response is not None:
        _stream(response, part, start, digest, url, dest, progress=progress)
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 mismatch: expected {sha256}, got {actual}; the download was deleted "
                            "(nothing was cached). A mirror serving another file, or a corrupt transfer: try again or "
                            f"{by_hand(url, dest)}")
    os.replace(part, dest)
    if sha256 is not None:
        _remember(dest, sha256)


def _stream(response, part: Path, start: int, digest, url: str, dest: Path, *, progress: bool) -> None:
    """Append the response body to `part` from byte `start`, hashing it; a cut connection keeps the part."""
    length = response.headers.get("Content-Length")
    remaining = int(length) if length and length.isdigit() else 0
    total = start + remaining if remaining else None
    try:
        with response, full_disk_is_one_error(part.parent, remaining, what=dest.name), \
                open(part, "r+b" if start else "wb") as f, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                     disable=not progress, file=sys.stderr) as bar:
            f.seek(start)
            f.truncate()
            while block := response.read1(CHUNK):  # what has arrived: a timeout later loses none of it
                f.write(block)
                digest.update(block)
                bar.update(len(block))
            got = f.tell()
    except DiskFullError:
        part.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException) as e:  # reset, timeout (an OSError), truncated body
        got = part.stat().st_size if part.exists() else 0
        raise DownloadError(f"download of {url} cut after {got / 2**20:,.1f} MB ({e}); run again to resume it, or "
                            f"{by_hand(url, dest)}") from None
    if total is not None and got != total:
        raise DownloadError(f"download of {url} cut after {got / 2**20:,.1f} of {total / 2**20:,.1f} MB (the "
                            f"connection closed early); run again to resume it, or {by_hand(url, dest)}")
