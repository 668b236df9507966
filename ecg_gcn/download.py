"""Fetch the training data of the PhysioNet/CinC Challenge 2020, resumably and checked.

    python -m ecg_gcn download DATA          # then: python train_model.py DATA MODEL

PhysioNet publishes the Challenge as the project challenge-2020, version 1.0.2
(https://physionet.org/files/challenge-2020/1.0.2/): each database under `training/<source>/`,
split into folders `g1`, `g2`, ... with a RECORDS file each, and at the root SHA256SUMS.txt, one
line `<sha256> <path>` per file of the project. That manifest drives everything here:

- what to fetch: the `.hea` and `.mat` files it lists under `training/<source>/` for the chosen
  sources. RECORDS and the other files are not needed: the manifest already names every record.
- where a file goes: straight into DATA, whatever its folder on the server. `records.find_records`
  reads one folder without recursing, as the official training code does, so a flat folder is
  what train_model.py takes. Record names are unique across the six sources (A, Q, E, S, HR, I:
  `crossval.source_of` still tells the databases apart by name); a manifest in which two files
  would share a name is refused before anything is fetched.
- when a file is done: when its SHA-256 is the manifest's. A file already in DATA is hashed on
  disk, without asking the server, and deleted and fetched again if the hash is wrong. The hash
  says more than a size would, and a rerun then costs no request per file, where comparing sizes
  with the server's Content-Length would cost one HEAD request for each of the 86,000 files.

A file is written to `<name>.part` and renamed once its hash is right, so DATA never holds half a
record. The `.part` of an interrupted run is resumed with a Range request. A server that ignores
Range answers 200 with the whole file, which then replaces the part. The size is checked against
Content-Length (Content-Range on a resume). A short transfer, a refused or dropped connection, a
timeout, or an answer 408, 429, 500, 502, 503 or 504 is retried (a short transfer from where it
stopped); other HTTP errors are final. A file whose hash does not match is deleted and reported,
except that a resumed one is first fetched once more from the start, since its old part may be
what spoilt it. After STOP_AFTER_FAILURES failed files in a row the download stops and says how
many it left.

Why not wfdb's downloader (`wfdb.dl_database`): to list the files it reads every header over the
network with `wfdb.rdheader`, which rejects Georgia's headers (see `ecg_gcn.records`); it writes
each file in place, so a killed run leaves half a record under the record's own name; and it
compares sizes, not hashes. Why not the project's zip archive: it cannot be limited to some
sources, and it needs the disk space twice until it is unpacked. Why threads: fetching 43,000
small records one connection at a time waits on the network, not on the CPU.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from tqdm import tqdm

BASE_URL = "https://physionet.org/files/challenge-2020/1.0.2/"
MANIFEST = "SHA256SUMS.txt"
SOURCES: tuple[str, ...] = (
    "cpsc_2018",
    "cpsc_2018_extra",
    "georgia",
    "ptb",
    "ptb-xl",
    "st_petersburg_incart",
)
RECORD_SUFFIXES = (".hea", ".mat")
PART_SUFFIX = ".part"
JOBS = 8

ATTEMPTS = 3
RETRY_WAIT_S = 2.0  # times the attempt number: wait 2 s, then 4 s
TIMEOUT_S = 60.0
CHUNK = 1 << 16
USER_AGENT = "ecg_gcn-download (Python urllib)"
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
SHOWN_FAILURES = 20  # a summary lists this many failed files, then counts the rest
# Failures in a row that stop a download: the network or the server is down, and retrying each of
# the remaining files would take hours to say so.
STOP_AFTER_FAILURES = 50

_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *]?(\S.*)")  # sha256sum's text and binary forms
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

FETCHED, COMPLETE, FAILED = "fetched", "complete", "failed"


class DownloadError(OSError):
    """The manifest cannot be fetched or lists nothing to fetch."""


class _TransferError(Exception):
    """A response that did not deliver what it announced (short body, wrong range)."""


# What the network may throw at a transfer; a 4xx or 5xx HTTPError is sorted by its code first.
_NETWORK_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
    ssl.SSLError,
    _TransferError,
)


@dataclass(frozen=True)
class Entry:
    """One file of the manifest: its path below the base URL and its SHA-256 (lower case)."""

    path: str
    sha256: str

    @property
    def name(self) -> str:
        """The file's name in the flat download folder."""
        return PurePosixPath(self.path).name


class _Outcome(NamedTuple):
    name: str
    status: str  # FETCHED, COMPLETE or FAILED
    received: int = 0  # bytes that came over the network, whether kept or not
    resumed: bool = False  # the file kept was completed from an earlier part
    reason: str = ""


@dataclass
class Summary:
    """What a download did, file by file (names sorted)."""

    fetched: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # those of `fetched` continued from a .part
    complete: list[str] = field(default_factory=list)  # already in the folder, hash checked
    failed: dict[str, str] = field(default_factory=dict)  # name -> why
    untried: list[str] = field(default_factory=list)  # left when too many failed in a row
    received: int = 0  # bytes transferred

    def lines(self) -> list[str]:
        """The summary as the command line prints it."""
        lines = [
            f"fetched {_files(len(self.fetched))} ({len(self.resumed)} resumed, "
            f"{self.received:,} bytes transferred), {_files(len(self.complete))} already "
            f"complete, {_files(len(self.failed))} failed" + (":" if self.failed else "")
        ]
        shown = sorted(self.failed)[:SHOWN_FAILURES]
        lines += [f"  {name}: {self.failed[name]}" for name in shown]
        if len(self.failed) > len(shown):
            lines.append(f"  ... and {len(self.failed) - len(shown)} more")
        if self.untried:
            lines.append(
                f"stopped after {STOP_AFTER_FAILURES} failures in a row: "
                f"{_files(len(self.untried))} not tried"
            )
        return lines


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def read_manifest(text: str, sources: Sequence[str] = SOURCES) -> list[Entry]:
    """The `.hea` and `.mat` files of `sources` that a SHA256SUMS.txt lists, sorted by path.

    Lines are `<sha256> <path>` or `<sha256>  <path>` (sha256sum's text form) or
    `<sha256> *<path>` (binary form); blank lines are skipped. Raises ValueError on any other line,
    such as a web page served in place of the manifest, and when two files would share a name in
    the flat download folder.
    """
    prefixes = tuple(f"training/{source}/" for source in sources)
    entries: dict[str, Entry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.fullmatch(line.strip())
        if not match:
            raise ValueError(f"{MANIFEST} line {number} is not '<sha256> <path>': {line[:80]!r}")
        path = match[2].removeprefix("./")
        if not path.startswith(prefixes) or not path.lower().endswith(RECORD_SUFFIXES):
            continue
        entry = Entry(path, match[1].lower())
        other = entries.setdefault(entry.name, entry)
        if other.path != entry.path:
            raise ValueError(f"{other.path} and {entry.path} would both be {entry.name}")
    return sorted(entries.values(), key=lambda entry: entry.path)


def download(
    folder: str | Path,
    base_url: str = BASE_URL,
    sources: Sequence[str] = SOURCES,
    jobs: int = JOBS,
    progress: bool = False,
) -> Summary:
    """Fetch the records of `sources` at `base_url` into `folder` (made if missing).

    Files already there with the right hash are kept; the rest are fetched, `jobs` at a time.
    Raises ValueError on an unknown source or a bad manifest, DownloadError when the manifest cannot
    be fetched. A file that fails is not an exception: the summary says which and why, and the
    next run takes it up again (resuming its `.part` where there is one).
    """
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown source {', '.join(unknown)}: choose from {', '.join(SOURCES)}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    manifest_url = base_url + MANIFEST
    entries = read_manifest(_read_url(manifest_url).decode("utf-8"), sources)
    if not entries:
        raise DownloadError(f"{manifest_url} lists no .hea or .mat file of {', '.join(sources)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    bar = tqdm(
        desc="download",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        postfix=f"0/{len(entries)} files",
        disable=not progress,
    )
    try:
        return _fetch_all(entries, folder, base_url, jobs, bar)
    finally:
        bar.close()


def _fetch_all(entries: list[Entry], folder: Path, base_url: str, jobs: int, bar: tqdm) -> Summary:
    """Fetch `entries` `jobs` at a time, stopping after STOP_AFTER_FAILURES failures in a row."""
    lock = threading.Lock()

    def count(n_bytes: int) -> None:
        with lock:
            bar.update(n_bytes)

    outcomes: list[_Outcome] = []
    in_a_row = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_fetch, entry, folder, base_url, count): entry for entry in entries}
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                in_a_row = in_a_row + 1 if outcomes[-1].status == FAILED else 0
                with lock:
                    bar.set_postfix_str(f"{len(outcomes)}/{len(entries)} files", refresh=False)
                    bar.update(0)  # shows the count at tqdm's pace even when no byte came
                if in_a_row >= STOP_AFTER_FAILURES:
                    break
        finally:
            # After a stop, Ctrl-C or a local error (disk full): start no other file, and let the
            # ones under way finish, each within its timeout.
            pool.shutdown(cancel_futures=True)
    seen = {outcome.name for outcome in outcomes}
    late = [f for f, entry in futures.items() if entry.name not in seen and not f.cancelled()]
    outcomes += [future.result() for future in late]
    untried = sorted(entry.name for future, entry in futures.items() if future.cancelled())
    return _summarize(outcomes, untried)


def _summarize(outcomes: list[_Outcome], untried: list[str]) -> Summary:
    summary = Summary(untried=untried)
    for outcome in sorted(outcomes):
        summary.received += outcome.received
        if outcome.status == FETCHED:
            summary.fetched.append(outcome.name)
            if outcome.resumed:
                summary.resumed.append(outcome.name)
        elif outcome.status == COMPLETE:
            summary.complete.append(outcome.name)
        else:
            summary.failed[outcome.name] = outcome.reason
    return summary


def _fetch(entry: Entry, folder: Path, base_url: str, count: Callable[[int], None]) -> _Outcome:
    """Make `folder/entry.name` hold the manifest's bytes, or say why it could not."""
    target = folder / entry.name
    if target.is_file():
        if _sha256(target) == entry.sha256:
            return _Outcome(entry.name, COMPLETE)
        target.unlink()  # not what was published: gone, whether or not the fetch succeeds
    part = target.with_name(target.name + PART_SUFFIX)
    url = base_url + urllib.parse.quote(entry.path)
    received = 0

    def counted(n_bytes: int) -> None:
        nonlocal received
        received += n_bytes
        count(n_bytes)

    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_WAIT_S * attempt)
        try:
            resumed = _transfer(url, part, counted)
        except urllib.error.HTTPError as error:
            reason = _why(error)
            if error.code in TRANSIENT_HTTP:
                continue
            part.unlink(missing_ok=True)
            return _Outcome(entry.name, FAILED, received, reason=reason)
        except _NETWORK_ERRORS as error:
            reason = _why(error)
            continue  # the part stays: the next attempt resumes it
        digest = _sha256(part)
        if digest == entry.sha256:
            os.replace(part, target)
            return _Outcome(entry.name, FETCHED, received, resumed)
        part.unlink()
        reason = f"SHA-256 {digest[:12]}... is not {entry.sha256[:12]}... of {MANIFEST}"
        if not resumed:
            return _Outcome(entry.name, FAILED, received, reason=reason)
    return _Outcome(entry.name, FAILED, received, reason=f"{reason} ({ATTEMPTS} attempts)")


def _transfer(url: str, part: Path, count: Callable[[int], None]) -> bool:
    """Complete `part` from `url`, resuming what it holds; True if the server resumed it."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, start)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the part is no shorter than the file: start again
            part.unlink()
            return _transfer(url, part, count)
        raise
    with response:
        resumed = start > 0 and response.status == 206
        length = response.headers.get("Content-Length")
        expected = int(length) if length else None
        if resumed:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match[1]) != start:
                part.unlink()  # what follows would not be the rest of this part
                got = match[0] if match else "no Content-Range"
                raise _TransferError(f"asked for bytes {start}- and got {got}")
            if match[3] != "*":
                expected = int(match[3])
            elif expected is not None:  # a total the server does not know: trust the length
                expected += start
        # else a fresh start, or a server that ignored Range and sends the whole file again
        with open(part, "ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                count(len(chunk))
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise _TransferError(f"{size:,} of {expected:,} bytes arrived")
    return resumed


def _open(url: str, start: int = 0) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def _read_url(url: str) -> bytes:
    """The whole body at `url` (the manifest), with the retries of a file."""
    reason = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(RETRY_WAIT_S * attempt)
        try:
            with _open(url) as response:
                body = response.read()
                length = response.headers.get("Content-Length")
            if length and len(body) != int(length):
                raise _TransferError(f"{len(body):,} of {int(length):,} bytes arrived")
            return body
        except urllib.error.HTTPError as error:
            reason = _why(error)
            if error.code not in TRANSIENT_HTTP:
                raise DownloadError(f"cannot fetch {url}: {reason}") from error
        except _NETWORK_ERRORS as error:
            reason = _why(error)
    raise DownloadError(f"cannot fetch {url}: {reason} ({ATTEMPTS} attempts)")


def _why(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
