"""`python -m ecg_gcn download` against a small copy of the PhysioNet project served on 127.0.0.1.

The copy has the project's layout (SHA256SUMS.txt at the root, `training/<source>/gN/` folders
with RECORDS files, and files outside `training/`), holds real synthetic records, and its server
honours Range requests (the standard library's does not), logging every request and every byte it
sends, so that the tests can tell a resumed transfer from a restarted one.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

import pytest

from ecg_gcn import download, records, synth

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "files/challenge-2020/1.0.2"  # where the served folder puts the project, as PhysioNet
LAYOUT = {  # record name prefix -> its folder on the server, and how many records
    "A": ("training/cpsc_2018/g1", 2),
    "E": ("training/georgia/g1", 1),
    "HR": ("training/ptb-xl/g2", 1),
}


# ---------------------------------------------------------------------------------------------
# The served project


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """GET of the files under `server.root`, with `Range: bytes=N-` unless the server ignores it."""

    server: FakePhysioNet

    def do_GET(self) -> None:
        server = self.server
        wanted = self.headers.get("Range")
        with server.lock:
            server.requests.append((self.path, wanted))
            failing = server.failures[self.path] > 0
            server.failures[self.path] -= failing
            cut = server.cuts[self.path] > 0
            server.cuts[self.path] -= cut
        path = server.root / urllib.parse.unquote(self.path).lstrip("/")
        if failing:
            self.send_error(503)
            return
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if wanted and not server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:  # the connection drops half way: HTTP/1.0 closes it once this returns
            body = body[: len(body) // 2]
        with server.lock:  # counted before sending: the client may check once it has the bytes
            server.sent[self.path] += len(body)
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class FakePhysioNet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.root = root
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent: Counter[str] = Counter()  # path -> body bytes sent
        self.failures: Counter[str] = Counter()  # path -> how many 503s to answer first
        self.cuts: Counter[str] = Counter()  # path -> how many answers to cut short first
        self.ignore_range = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{PROJECT}"  # no "/": download adds it

    @property
    def project(self) -> Path:
        return self.root / PROJECT

    def path_of(self, name: str) -> str:
        """The URL path of the served record file `name`."""
        (found,) = self.project.glob(f"training/*/*/{name}")
        return f"/{PROJECT}/{found.relative_to(self.project).as_posix()}"

    def record_files(self) -> dict[str, bytes]:
        """Name -> bytes of every served .hea and .mat file."""
        files = self.project.glob("training/*/*/*")
        return {path.name: path.read_bytes() for path in files if path.suffix in (".hea", ".mat")}


def write_manifest(project: Path) -> None:
    lines = []
    for path in sorted(project.rglob("*")):
        if path.is_file() and path.name != download.MANIFEST:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {path.relative_to(project).as_posix()}\n")
    (project / download.MANIFEST).write_text("".join(lines))


@pytest.fixture(scope="session")
def project_template(tmp_path_factory) -> Path:
    """The project's layout with real synthetic records in it, made once."""
    project = tmp_path_factory.mktemp("template") / "project"
    for seed, (prefix, (folder, n)) in enumerate(LAYOUT.items()):
        names = synth.generate(project / folder, n, seed, prefix=prefix, seconds=4.0)
        (project / folder / "RECORDS").write_text("".join(f"{name}\n" for name in names))
    (project / "RECORDS").write_text("".join(f"{folder}/\n" for folder, _ in LAYOUT.values()))
    (project / "README.txt").write_text("not part of the training data\n")
    (project / "training" / "ptb-xl" / "notes.txt").write_text("not a record either\n")
    write_manifest(project)
    return project


@pytest.fixture
def server(project_template, tmp_path):
    """A fresh copy of the project, served on 127.0.0.1 until the test ends."""
    root = tmp_path / "server"
    shutil.copytree(project_template, root / PROJECT)
    served = FakePhysioNet(root)
    thread = threading.Thread(target=served.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield served
    served.shutdown()
    served.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)


def fetch(server: FakePhysioNet, out: Path, **kw) -> download.Summary:
    return download.download(out, server.url, jobs=2, **kw)


def folder_files(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in out.iterdir()}


# ---------------------------------------------------------------------------------------------
# The manifest


def test_read_manifest_keeps_the_records_of_the_chosen_sources():
    a, b, c, d = ("a" * 64, "B" * 64, "c" * 64, "d" * 64)
    text = (
        f"{a}  training/cpsc_2018/g1/A0001.hea\n"
        f"{b} *training/cpsc_2018/g1/A0001.mat\n"  # sha256sum's binary form
        f"{c} ./training/georgia/g1/E00001.MAT\n"
        "\n"
        f"{d}  training/cpsc_2018/g1/RECORDS\n"
        f"{d}  training/cpsc_2018_extra/g1/Q0001.hea\n"
        f"{d}  sources/cpsc_2018/A0002.hea\n"
        f"{d}  README.md\n"
    )
    assert download.read_manifest(text, ["cpsc_2018", "georgia"]) == [
        download.Entry("training/cpsc_2018/g1/A0001.hea", a),
        download.Entry("training/cpsc_2018/g1/A0001.mat", b.lower()),
        download.Entry("training/georgia/g1/E00001.MAT", c),
    ]
    assert [entry.name for entry in download.read_manifest(text)] == [
        "A0001.hea",
        "A0001.mat",
        "Q0001.hea",
        "E00001.MAT",
    ]


def test_read_manifest_refuses_what_is_not_a_manifest():
    with pytest.raises(ValueError, match="line 1 is not '<sha256> <path>'"):
        download.read_manifest("<!DOCTYPE html>\n<html>\n")
    twice = f"{'a' * 64}  training/ptb/g1/S0001.hea\n{'b' * 64}  training/ptb/g2/S0001.hea\n"
    with pytest.raises(ValueError, match=r"would both be S0001\.hea"):
        download.read_manifest(twice)


# ---------------------------------------------------------------------------------------------
# Downloads


def test_a_download_puts_the_served_records_in_one_folder_that_training_reads(server, tmp_path):
    out = tmp_path / "data"
    summary = fetch(server, out, progress=True)
    served = server.record_files()
    assert folder_files(out) == served  # same bytes; no .part, RECORDS, README or notes
    assert summary.fetched == sorted(served)
    assert summary.received == sum(len(data) for data in served.values())
    assert (summary.resumed, summary.complete, summary.failed) == ([], [], {})
    names = records.find_records(out)
    assert names == ["A00000", "A00001", "E00000", "HR00000"]
    assert all(records.load_record(out / f"{name}.hea").signal.shape[0] == 12 for name in names)


def test_a_second_run_fetches_nothing(server, tmp_path):
    out = tmp_path / "data"
    fetch(server, out)
    before = len(server.requests)
    summary = fetch(server, out)
    assert summary.complete == sorted(server.record_files())
    assert (summary.fetched, summary.failed, summary.received) == ([], {}, 0)
    assert [path for path, _ in server.requests[before:]] == [f"/{PROJECT}/SHA256SUMS.txt"]
    assert (
        "0 files (0 resumed, 0 bytes transferred), 8 files already complete" in (summary.lines()[0])
    )


def test_sources_limit_what_is_fetched(server, tmp_path):
    summary = fetch(server, tmp_path / "data", sources=["georgia", "ptb-xl"])
    assert summary.fetched == ["E00000.hea", "E00000.mat", "HR00000.hea", "HR00000.mat"]
    with pytest.raises(ValueError, match="unknown source ptbxl"):
        fetch(server, tmp_path / "data", sources=["ptbxl"])


def test_a_truncated_part_is_resumed_from_where_it_stopped(server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    data = server.record_files()["A00001.mat"]
    kept = len(data) // 3
    (out / "A00001.mat.part").write_bytes(data[:kept])
    summary = fetch(server, out, sources=["cpsc_2018"])
    assert (out / "A00001.mat").read_bytes() == data
    assert not (out / "A00001.mat.part").exists()
    path = server.path_of("A00001.mat")
    assert [wanted for seen, wanted in server.requests if seen == path] == [f"bytes={kept}-"]
    assert server.sent[path] == len(data) - kept
    assert summary.resumed == ["A00001.mat"]


def test_a_transfer_cut_short_is_resumed_in_the_same_run(server, tmp_path):
    out = tmp_path / "data"
    data = server.record_files()["A00000.mat"]
    path = server.path_of("A00000.mat")
    server.cuts[path] = 1
    summary = fetch(server, out, sources=["cpsc_2018"])
    assert (out / "A00000.mat").read_bytes() == data
    half = len(data) // 2
    assert [wanted for seen, wanted in server.requests if seen == path] == [None, f"bytes={half}-"]
    assert server.sent[path] == len(data)
    assert summary.resumed == ["A00000.mat"] and summary.failed == {}


def test_a_server_that_ignores_range_still_gives_the_whole_file(server, tmp_path):
    server.ignore_range = True
    out = tmp_path / "data"
    out.mkdir()
    data = server.record_files()["E00000.mat"]
    (out / "E00000.mat.part").write_bytes(b"\0" * 100)  # appending to it would spoil the file
    summary = fetch(server, out, sources=["georgia"])
    assert (out / "E00000.mat").read_bytes() == data
    assert server.sent[server.path_of("E00000.mat")] == len(data)
    assert summary.resumed == [] and summary.failed == {}


def test_a_spoilt_part_is_fetched_again_from_the_start(server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    data = server.record_files()["HR00000.mat"]
    (out / "HR00000.mat.part").write_bytes(b"\xff" * 1000)
    summary = fetch(server, out, sources=["ptb-xl"])
    assert (out / "HR00000.mat").read_bytes() == data
    path = server.path_of("HR00000.mat")
    assert [wanted for seen, wanted in server.requests if seen == path] == ["bytes=1000-", None]
    assert summary.fetched == ["HR00000.hea", "HR00000.mat"]
    assert summary.resumed == [] and summary.failed == {}


def test_a_stale_file_in_the_folder_is_replaced(server, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "A00000.hea").write_text("an older header\n")
    summary = fetch(server, out, sources=["cpsc_2018"])
    assert (out / "A00000.hea").read_bytes() == server.record_files()["A00000.hea"]
    assert "A00000.hea" in summary.fetched


def test_a_file_that_does_not_match_its_hash_fails_and_is_not_kept(server, tmp_path):
    (server.project / "training/georgia/g1/E00000.mat").write_bytes(b"not what was published")
    out = tmp_path / "data"
    out.mkdir()
    (out / "E00000.mat").write_bytes(b"left by some earlier download")
    summary = fetch(server, out)
    assert list(summary.failed) == ["E00000.mat"]
    assert "SHA-256" in summary.failed["E00000.mat"]
    assert not (out / "E00000.mat").exists() and not (out / "E00000.mat.part").exists()
    assert len(summary.fetched) == 7
    asked = [seen for seen, _ in server.requests if seen == server.path_of("E00000.mat")]
    assert len(asked) == 1  # a fresh file that fails its hash is not fetched again
    assert summary.lines()[1].startswith("  E00000.mat: SHA-256")


def test_a_server_error_is_retried_and_a_missing_file_is_not(server, tmp_path):
    server.failures[server.path_of("A00000.hea")] = 2
    (server.project / "training/cpsc_2018/g1/A00001.mat").unlink()
    summary = fetch(server, tmp_path / "data", sources=["cpsc_2018"])
    assert summary.fetched == ["A00000.hea", "A00000.mat", "A00001.hea"]
    assert summary.failed == {"A00001.mat": "HTTP 404 Not Found"}
    seen = Counter(path for path, _ in server.requests)
    assert seen[server.path_of("A00000.hea")] == 3
    assert seen[f"/{PROJECT}/training/cpsc_2018/g1/A00001.mat"] == 1


def test_a_download_stops_after_many_failures_in_a_row(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "STOP_AFTER_FAILURES", 2)
    for name in server.record_files():
        server.failures[server.path_of(name)] = 99
    summary = download.download(tmp_path / "data", server.url, jobs=1)
    assert 2 <= len(summary.failed) <= 3  # the file under way when it stops still finishes
    assert len(summary.failed) + len(summary.untried) == 8
    assert len(server.requests) == 1 + download.ATTEMPTS * len(summary.failed)
    assert (
        summary.lines()[-1]
        == f"stopped after 2 failures in a row: {len(summary.untried)} files not tried"
    )


def test_a_project_without_a_manifest_is_a_clear_error(server, tmp_path):
    with pytest.raises(download.DownloadError, match=r"SHA256SUMS\.txt: HTTP 404"):
        download.download(tmp_path / "data", server.url + "/training")


def test_the_command_line_exits_non_zero_naming_the_failed_file(server, tmp_path):
    (server.project / "training/cpsc_2018/g1/A00000.mat").write_bytes(b"tampered")
    command = [sys.executable, "-m", "ecg_gcn", "download", str(tmp_path / "data")]
    command += ["--base-url", server.url, "--sources", "cpsc_2018", "--jobs", "2"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "fetched 3 files (0 resumed" in done.stdout
    assert "A00000.mat: SHA-256" in done.stdout
    assert "error: could not fetch A00000.mat" in done.stderr
