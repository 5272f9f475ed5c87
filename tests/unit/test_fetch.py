"""controller.images against a real HTTP server on 127.0.0.1 and real files: no mocks, no libvirt.

Faults come from tests/support/httpserver.py (stalls, truncation, no Range support, 404,
a server that never answers), from real processes killed with SIGKILL, and from a small
tmpfs that fills up.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.images import (
    BadInput,
    CacheError,
    ChecksumMismatch,
    FetchError,
    HTTPError,
    Interrupted,
    NotFound,
    ProgressLine,
    Stalled,
    Unreachable,
    cache_paths,
    fetch_image,
    redact_url,
)
from tests.support.httpserver import FileServer, http_server, never_accepting, refusing
from tests.support.processes import children
from tests.support.waiting import wait_until

__all__ = ["children", "http_server"]  # the fixtures, imported for pytest

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def _image(server: FileServer, name: str = "disk.img", size: int = 8 * MiB) -> tuple[bytes, str]:
    data = os.urandom(size)
    (server.root / name).write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "state" / "images"


def _leftovers(cache: Path) -> set[str]:
    """What the cache holds besides lock files."""
    return {p.name for p in cache.iterdir() if not p.name.endswith(".lock")} if cache.exists() \
        else set()


# ---------------------------------------------------------------------------- happy paths

def test_downloads_verifies_and_caches_by_sha256(http_server: FileServer, cache: Path) -> None:
    data, sha = _image(http_server)
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha.upper(), cache_dir=cache)
    assert got.path == cache / sha
    assert got.path.read_bytes() == data
    assert (got.size, got.sha256, got.transferred, got.resumed_from) == (
        len(data), sha, len(data), 0)
    assert got.path.stat().st_mode & 0o777 == 0o444
    assert _leftovers(cache) == {sha, f"{sha}.ok"}
    [seen] = http_server.requests
    assert (seen.status, seen.range, seen.body_bytes) == (200, None, len(data))


def test_cache_hit_makes_no_request(http_server: FileServer, cache: Path) -> None:
    _data, sha = _image(http_server)
    first = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    with refusing() as (host, port):  # a URL that cannot work: the hit must not need it
        again = fetch_image(url=f"http://{host}:{port}/disk.img", sha256=sha, cache_dir=cache)
    assert again.path == first.path and again.transferred == 0
    assert len(http_server.requests) == 1


def test_progress_reports_bytes_done_and_total(http_server: FileServer, cache: Path) -> None:
    data, sha = _image(http_server, size=5 * MiB + 17)
    calls: list[tuple[int, int | None]] = []
    fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache,
                progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) > 2


def test_stamp_missing_rehashes_without_a_request(http_server: FileServer, cache: Path) -> None:
    _data, sha = _image(http_server)
    fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    cache_paths(cache, sha).stamp.unlink()  # as after a kill between the rename and the stamp
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert got.transferred == 0 and len(http_server.requests) == 1
    assert cache_paths(cache, sha).stamp.exists()


def test_changed_cached_image_is_downloaded_again(http_server: FileServer, cache: Path) -> None:
    data, sha = _image(http_server)
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    got.path.chmod(0o644)
    with open(got.path, "r+b") as f:
        f.write(b"X")
    again = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert again.path.read_bytes() == data and again.transferred == len(data)
    assert len(http_server.requests) == 2


def test_complete_partial_is_finished_without_a_request(http_server: FileServer,
                                                       cache: Path) -> None:
    data, sha = _image(http_server)
    cache.mkdir(parents=True)
    cache_paths(cache, sha).partial.write_bytes(data)  # killed after the last byte, before rename
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert got.path.read_bytes() == data and got.transferred == 0
    assert http_server.requests == []
    assert _leftovers(cache) == {sha, f"{sha}.ok"}


# ---------------------------------------------------------------------------- failures

def test_checksum_mismatch_names_both_sums_and_keeps_nothing(http_server: FileServer,
                                                            cache: Path) -> None:
    _data, actual = _image(http_server)
    wanted = hashlib.sha256(b"another image").hexdigest()
    with pytest.raises(ChecksumMismatch) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=wanted, cache_dir=cache)
    message = str(caught.value)
    assert wanted in message and actual in message and "\n" not in message
    assert (caught.value.expected, caught.value.actual) == (wanted, actual)
    assert not caught.value.retryable
    assert _leftovers(cache) == set()


def test_404_is_one_line_with_status_and_url_without_secrets(http_server: FileServer,
                                                             cache: Path) -> None:
    url = http_server.url("missing.img", userinfo="alice:s3cret", query="token=t0ken")
    with pytest.raises(NotFound) as caught:
        fetch_image(url=url, sha256="a" * 64, cache_dir=cache)
    message = str(caught.value)
    assert "404" in message and f"127.0.0.1:{http_server.port}/missing.img" in message
    assert "s3cret" not in message and "alice" not in message and "t0ken" not in message
    assert "\n" not in message
    # the credentials were used, only hidden
    sent = http_server.requests[0].headers["authorization"]
    assert base64.b64decode(sent.split()[1]) == b"alice:s3cret"
    assert _leftovers(cache) == set()


def test_server_error_is_a_retryable_http_error(http_server: FileServer, cache: Path) -> None:
    _, sha = _image(http_server)
    http_server.behave(status=503)
    with pytest.raises(HTTPError) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert caught.value.status == 503 and caught.value.retryable
    assert "503" in str(caught.value) and "disk.img" in str(caught.value)


def test_stall_fails_at_the_deadline_and_keeps_the_partial(http_server: FileServer,
                                                          cache: Path) -> None:
    _data, sha = _image(http_server)
    http_server.behave(stall_after=100_000)
    began = time.monotonic()
    with pytest.raises(Stalled) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache,
                    stall_timeout=0.5)
    assert time.monotonic() - began < 10  # a deadline, not a hang (generous bound)
    assert "0.5 s" in str(caught.value) and caught.value.retryable
    assert cache_paths(cache, sha).partial.stat().st_size == 100_000
    assert not cache_paths(cache, sha).image.exists()


def test_server_that_accepts_but_never_answers(http_server: FileServer, cache: Path) -> None:
    _, sha = _image(http_server)
    http_server.behave(silent=True)
    with pytest.raises(Stalled) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache,
                    stall_timeout=0.5)
    assert "no answer" in str(caught.value)
    assert _leftovers(cache) == set()


def test_host_that_never_accepts_fails_at_the_connect_timeout(cache: Path) -> None:
    with never_accepting() as (host, port), pytest.raises(Unreachable) as caught:
        fetch_image(url=f"http://{host}:{port}/disk.img", sha256="b" * 64, cache_dir=cache,
                    connect_timeout=0.5)
    assert "no connection within 0.5 s" in str(caught.value) and caught.value.retryable


def test_refused_connection_is_unreachable(cache: Path) -> None:
    with refusing() as (host, port), pytest.raises(Unreachable) as caught:
        fetch_image(url=f"http://{host}:{port}/disk.img", sha256="b" * 64, cache_dir=cache)
    assert "refused" in str(caught.value).lower()


@pytest.mark.parametrize("url, sha, words", [
    ("ftp://example.invalid/disk.img", "c" * 64, "scheme"),
    ("disk.img", "c" * 64, "scheme"),
    ("file://otherhost/disk.img", "c" * 64, "local path"),
    ("http:///disk.img", "c" * 64, "no host"),
    ("http://127.0.0.1/disk.img", "c" * 63, "sha256"),
    ("http://127.0.0.1/disk.img", "g" * 64, "sha256"),
])
def test_bad_input_is_one_line_and_touches_nothing(cache: Path, url: str, sha: str,
                                                   words: str) -> None:
    with pytest.raises(BadInput) as caught:
        fetch_image(url=url, sha256=sha, cache_dir=cache)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert not cache.exists()


# ---------------------------------------------------------------------------- resuming

def test_truncated_download_resumes_with_range(http_server: FileServer, cache: Path) -> None:
    data, sha = _image(http_server)
    cut = 3 * MiB + 123
    http_server.behave(close_after=cut)
    with pytest.raises(Interrupted):
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert cache_paths(cache, sha).partial.stat().st_size == cut
    http_server.behave(close_after=None)
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert got.path.read_bytes() == data
    assert (got.resumed_from, got.transferred) == (cut, len(data) - cut)
    first, second = http_server.requests
    assert first.body_bytes == cut
    assert second.range == f"bytes={cut}-" and second.if_range is not None
    assert (second.status, second.body_bytes) == (206, len(data) - cut)  # no prefix again
    assert _leftovers(cache) == {sha, f"{sha}.ok"}


def test_server_without_range_support_restarts_cleanly(http_server: FileServer,
                                                       cache: Path) -> None:
    data, sha = _image(http_server)
    http_server.behave(close_after=2 * MiB)
    with pytest.raises(Interrupted):
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    http_server.behave(close_after=None, ranges=False)
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert got.path.read_bytes() == data and (got.resumed_from, got.transferred) == (0, len(data))
    second = http_server.requests[1]
    assert second.range == f"bytes={2 * MiB}-" and second.status == 200


def test_file_changed_on_the_server_restarts_through_if_range(http_server: FileServer,
                                                              cache: Path) -> None:
    data, sha = _image(http_server)
    served = http_server.root / "disk.img"
    served.write_bytes(os.urandom(len(data)))  # at first the server has the wrong file
    http_server.behave(close_after=2 * MiB)
    with pytest.raises(Interrupted):
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    served.write_bytes(data)  # then the right one (another mtime, another ETag)
    os.utime(served, ns=(time.time_ns(), time.time_ns() + 10**9))
    http_server.behave(close_after=None)
    got = fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert got.path.read_bytes() == data and got.resumed_from == 0
    second = http_server.requests[1]
    assert second.if_range is not None and second.status == 200


_CHILD = """
import json, sys
from pathlib import Path
from controller.images import FetchError, fetch_image
try:
    got = fetch_image(url=sys.argv[1], sha256=sys.argv[2], cache_dir=Path(sys.argv[3]),
                      stall_timeout=30)
except FetchError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(1)
print(json.dumps({"path": str(got.path), "transferred": got.transferred,
                  "resumed_from": got.resumed_from}))
"""


def _child(url: str, sha: str, cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, url, sha, str(cache)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    result = json.loads(out)
    assert isinstance(result, dict)
    return result


def test_kill_9_mid_download_then_a_new_process_resumes(
        http_server: FileServer, cache: Path, children: list[subprocess.Popen[str]]) -> None:
    data, sha = _image(http_server, size=16 * MiB)
    partial = cache_paths(cache, sha).partial
    http_server.behave(rate=4 * MiB)
    first = _child(http_server.url("disk.img"), sha, cache)
    children.append(first)
    wait_until(lambda: partial.exists() and partial.stat().st_size >= 2 * MiB, timeout=60,
               what="the first process to write 2 MiB")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    kept = partial.stat().st_size
    assert 2 * MiB <= kept < len(data) and not cache_paths(cache, sha).image.exists()

    http_server.behave(rate=None)
    second = _child(http_server.url("disk.img"), sha, cache)
    children.append(second)
    result = _result(second)
    assert result["resumed_from"] == kept and result["transferred"] == len(data) - kept
    assert Path(str(result["path"])).read_bytes() == data
    last = http_server.requests[-1]
    assert last.range == f"bytes={kept}-" and last.body_bytes == len(data) - kept


def _has_open(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:  # an fd closed while looking
        return False


def test_two_processes_fetching_one_image_download_it_once(
        http_server: FileServer, cache: Path, children: list[subprocess.Popen[str]]) -> None:
    data, sha = _image(http_server, size=8 * MiB)
    http_server.behave(pause_after=1 * MiB)
    first = _child(http_server.url("disk.img"), sha, cache)
    children.append(first)
    wait_until(lambda: http_server.paused == 1, timeout=60, what="the first download to pause")
    second = _child(http_server.url("disk.img"), sha, cache)
    children.append(second)
    # the second waits for the first's lock (it has the lock file open, and sends nothing)
    wait_until(lambda: _has_open(second.pid, cache_paths(cache, sha).lock), timeout=60,
               what="the second process to wait for the lock")
    assert first.poll() is None and second.poll() is None
    http_server.release()
    results = [_result(first), _result(second)]
    assert {r["path"] for r in results} == {str(cache / sha)}
    assert [r["transferred"] for r in results] == [len(data), 0]
    assert len(http_server.requests) == 1
    assert (cache / sha).read_bytes() == data
    assert _leftovers(cache) == {sha, f"{sha}.ok"}


def test_waiting_for_a_holder_that_writes_nothing_has_a_deadline(http_server: FileServer,
                                                                cache: Path) -> None:
    import fcntl

    _, sha = _image(http_server)
    cache.mkdir(parents=True)
    with open(cache_paths(cache, sha).lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(Stalled) as caught:
            fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache,
                        stall_timeout=0.2)
    assert "another process" in str(caught.value)
    assert http_server.requests == []


# ---------------------------------------------------------------------------- file://

def test_file_url_is_verified_and_copied_into_the_cache(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "my image.qcow2"
    data = os.urandom(3 * MiB + 5)
    source.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    got = fetch_image(url=source.as_uri(), sha256=sha, cache_dir=cache)
    assert got.path == cache / sha and got.path.read_bytes() == data
    assert source.read_bytes() == data and got.transferred == len(data)
    again = fetch_image(url=source.as_uri(), sha256=sha, cache_dir=cache)
    assert again.transferred == 0


def test_file_url_mismatch_and_missing(tmp_path: Path, cache: Path) -> None:
    source = tmp_path / "disk.img"
    source.write_bytes(b"not the image")
    with pytest.raises(ChecksumMismatch):
        fetch_image(url=source.as_uri(), sha256="d" * 64, cache_dir=cache)
    assert _leftovers(cache) == set()
    with pytest.raises(NotFound) as caught:
        fetch_image(url=(tmp_path / "nope.img").as_uri(), sha256="d" * 64, cache_dir=cache)
    assert "nope.img" in str(caught.value)


# ---------------------------------------------------------------------------- a full disk

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at teardown (needs root; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_cache_with_known_length_fails_before_writing(http_server: FileServer,
                                                           small_fs: Path) -> None:
    _, sha = _image(http_server, size=8 * MiB)
    cache = small_fs / "images"
    with pytest.raises(CacheError) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert "not enough space" in str(caught.value) and "\n" not in str(caught.value)
    assert _leftovers(cache) == set()


def test_cache_filling_up_mid_download_removes_the_partial(http_server: FileServer,
                                                           small_fs: Path) -> None:
    _, sha = _image(http_server, size=8 * MiB)
    http_server.behave(content_length=False)  # the size is learnt only at the end
    cache = small_fs / "images"
    with pytest.raises(CacheError) as caught:
        fetch_image(url=http_server.url("disk.img"), sha256=sha, cache_dir=cache)
    assert "no space left" in str(caught.value) and "\n" not in str(caught.value)
    assert _leftovers(cache) == set()
    st = os.statvfs(small_fs)
    assert (st.f_blocks - st.f_bfree) * st.f_frsize < 64 * 1024  # the space is given back


# ---------------------------------------------------------------------------- messages, progress

def test_redact_url() -> None:
    assert redact_url("https://u:p@host:8443/a/b.img?sig=x#frag") == "https://host:8443/a/b.img?…"
    assert redact_url("file:///var/tmp/x.img") == "file:///var/tmp/x.img"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_writes_nothing_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with ProgressLine(label="debian-12", stream=stream) as line:
        line(10, 100)
        line(100, 100)
    assert stream.getvalue() == ""


def test_progress_line_is_throttled_and_ends_with_a_newline() -> None:
    stream, clock = _Terminal(), _Clock()
    line = ProgressLine(label="debian-12", stream=stream, interval=0.25, clock=clock)
    line(0, 4 * MiB)
    for done in range(1, 5):
        clock.now += 0.1
        line(done * MiB, 4 * MiB)  # every 0.1 s: painted at 0.0 and 0.3, not in between
    painted = stream.getvalue().split("\r")
    assert painted[1:] == ["\x1b[Kdebian-12: 0 B of 4.0 MiB (0%)",
                           "\x1b[Kdebian-12: 3.0 MiB of 4.0 MiB (75%), 10.0 MiB/s"]
    line.close()
    assert stream.getvalue().endswith("\rdebian-12: 4.0 MiB of 4.0 MiB (100%), 10.0 MiB/s\n"
                                      .replace("\r", "\r\x1b[K"))
    line.close()  # closing twice writes nothing more
    assert stream.getvalue().count("\n") == 1


def test_progress_line_without_a_total() -> None:
    line = ProgressLine(label="img", stream=_Terminal())
    assert line.render(5 * MiB, None, elapsed=2.0) == "img: 5.0 MiB, 2.5 MiB/s"
    assert line.render(0, None, elapsed=0.0) == "img: 0 B"


def test_every_fetch_error_is_a_reconcile_error() -> None:
    from controller.errors import ReconcileError

    for cls in (BadInput, CacheError, ChecksumMismatch, HTTPError, Interrupted, NotFound,
                Stalled, Unreachable):
        assert issubclass(cls, FetchError) and issubclass(cls, ReconcileError)
