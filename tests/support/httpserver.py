"""A real HTTP/1.1 file server on 127.0.0.1 for tests that download, with faults on demand.

Used by tests/unit/test_fetch.py (controller.fetch), and meant for the later tests that
import an image through libvirt or kill a download half-way. It serves the files of one
folder on an ephemeral port and can be told, at any time, how to misbehave (`Behaviour`):
ignore Range, answer one status, stall after N body bytes with the connection left open,
pause after N body bytes until the test calls `release()`, close the connection after N
body bytes, throttle, omit Content-Length, or accept a request and never answer. It
records every request (`Seen`) with the Range and If-Range headers it got and the body
bytes it handed to the socket.

    from tests.support.httpserver import FileServer, http_server  # noqa: F401 (fixture)

    def test_resume(http_server: FileServer) -> None:
        (http_server.root / "disk.img").write_bytes(data)
        http_server.behave(close_after=4096)          # every later request, until changed
        http_server.queue(Behaviour(status=503))      # or: the next request only
        ... http_server.url("disk.img") ...
        assert http_server.requests[-1].range == "bytes=4096-"

Byte counts are taken before the bytes go to the socket, so once a client has read a
response to its end, the count of that response is complete: no waiting needed. A stalled
or silent response ends when the server stops; `stop()` also shuts the open connections,
so no handler thread outlives the fixture. `never_accepting()` gives an address whose
connections are never accepted, for connect timeouts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit

import pytest

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BLOCK = 64 * 1024
_SENDFILE_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Behaviour:
    """How the server answers. The defaults are a well-behaved static file server.

    ranges:         honour a single `Range: bytes=a-b` (206), else send the whole file (200)
    status:         answer every request with this status and an empty body (e.g. 404, 503)
    stall_after:    send this many body bytes, then nothing more; the connection stays open
                    until the server stops (the client sees a stall, not an end)
    close_after:    send this many body bytes, then close the connection (a truncated body)
    pause_after:    send this many body bytes, then wait for `FileServer.release()` and go on
                    (`FileServer.paused` counts the responses waiting)
    rate:           bytes per second at most (paced in small blocks)
    silent:         read the request and never answer (until the server stops)
    content_length: False: no Content-Length; the body ends when the connection closes
    validators:     send ETag and Last-Modified, and honour If-Range with them
    """

    ranges: bool = True
    status: int | None = None
    stall_after: int | None = None
    close_after: int | None = None
    pause_after: int | None = None
    rate: float | None = None
    silent: bool = False
    content_length: bool = True
    validators: bool = True


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it, and what it answered (status 0: not yet answered)."""

    method: str
    path: str
    headers: Mapping[str, str]
    status: int
    body_bytes: int

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def if_range(self) -> str | None:
        return self.headers.get("if-range")


@dataclass
class _Record:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


class FileServer:
    """Serves the files under `root` on http://127.0.0.1:<port>/ from its own threads."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._behaviour = Behaviour()
        self._queued: deque[Behaviour] = deque()
        self._records: list[_Record] = []
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._paused = 0
        self._releases = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle

    def start(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="test-http-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, end stalled and silent responses, close every connection, join."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            self._lock.notify_all()  # paused responses
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._httpd.server_close()  # joins the handler threads (block_on_close)
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._httpd = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, name: str, *, userinfo: str | None = None, query: str | None = None) -> str:
        """The URL of `root/name`; `userinfo` ("user:password") goes before the host."""
        auth = f"{userinfo}@" if userinfo else ""
        tail = f"?{query}" if query else ""
        return f"http://{auth}127.0.0.1:{self.port}/{quote(name)}{tail}"

    # -- behaviour

    def behave(self, behaviour: Behaviour | None = None, **changes: Any) -> None:
        """Set how every later request is answered: a whole Behaviour, or changes to it."""
        with self._lock:
            base = behaviour if behaviour is not None else self._behaviour
            self._behaviour = dataclasses.replace(base, **changes)

    def queue(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, one each, before going back to `behave`'s."""
        with self._lock:
            self._queued.extend(behaviours)

    def release(self) -> None:
        """Let every response paused by `pause_after` go on (later pauses wait again)."""
        with self._lock:
            self._releases += 1
            self._lock.notify_all()

    @property
    def paused(self) -> int:
        """How many responses are waiting in `pause_after` right now."""
        with self._lock:
            return self._paused

    # -- what it saw

    @property
    def requests(self) -> list[Seen]:
        """Every request so far, oldest first, as a snapshot."""
        with self._lock:
            return [Seen(method=r.method, path=r.path, headers=dict(r.headers),
                         status=r.status, body_bytes=r.body_bytes) for r in self._records]

    @property
    def bytes_sent(self) -> int:
        """Body bytes handed to the sockets, all requests together."""
        with self._lock:
            return sum(r.body_bytes for r in self._records)

    def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> list[Seen]:
        """Wait until at least `count` requests have arrived; fail after `timeout` seconds."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._records) >= count, timeout=timeout):
                raise AssertionError(f"timed out after {timeout:g} s waiting for {count} "
                                     f"requests (got {len(self._records)})")
        return self.requests

    # -- used by the handler

    def _begin(self, method: str, path: str, headers: dict[str, str]) -> tuple[_Record, Behaviour]:
        with self._lock:
            behaviour = self._queued.popleft() if self._queued else self._behaviour
            record = _Record(method=method, path=path, headers=headers)
            self._records.append(record)
            self._lock.notify_all()
            return record, behaviour

    def _count(self, record: _Record, *, status: int | None = None, body: int = 0) -> None:
        with self._lock:
            if status is not None:
                record.status = status
            record.body_bytes += body

    def _pause(self) -> None:
        with self._lock:
            generation = self._releases
            self._paused += 1
            self._lock.notify_all()
            self._lock.wait_for(lambda: self._releases > generation or self._stopping.is_set())
            self._paused -= 1

    def _resolve(self, raw_path: str) -> Path | None:
        relative = unquote(urlsplit(raw_path).path).lstrip("/")
        candidate = (self.root / relative).resolve()
        root = self.root.resolve()
        if candidate != root and root not in candidate.parents:
            return None
        return candidate if candidate.is_file() else None


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    owner: FileServer

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        headers = {key.lower(): value for key, value in self.headers.items()}
        record, behaviour = owner._begin(self.command, self.path, headers)
        if behaviour.silent:
            owner._stopping.wait()
            self.close_connection = True
            return
        if behaviour.status is not None:
            self._empty(record, behaviour.status)
            return
        path = owner._resolve(self.path)
        if path is None:
            self._empty(record, 404)
            return
        st = path.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end, status = 0, size - 1, 200
        asked = headers.get("range")
        if behaviour.ranges and asked is not None and self._if_range_holds(
                headers.get("if-range"), etag=etag, mtime=st.st_mtime, behaviour=behaviour):
            parsed = _parse_range(asked, size)
            if parsed is None:
                self._empty(record, 416, extra={"Content-Range": f"bytes */{size}"})
                return
            start, end = parsed
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes" if behaviour.ranges else "none")
        if behaviour.validators:
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        if behaviour.content_length:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        owner._count(record, status=status)
        if not head:
            self._body(path, start=start, length=length, behaviour=behaviour, record=record)

    def _if_range_holds(self, if_range: str | None, *, etag: str, mtime: float,
                        behaviour: Behaviour) -> bool:
        if if_range is None:
            return True
        if not behaviour.validators:
            return False
        return if_range in (etag, formatdate(mtime, usegmt=True))

    def _empty(self, record: _Record, status: int, *, extra: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.server.owner._count(record, status=status)

    def _body(self, path: Path, *, start: int, length: int, behaviour: Behaviour,
              record: _Record) -> None:
        owner = self.server.owner
        cut = min((n for n in (behaviour.stall_after, behaviour.close_after) if n is not None),
                  default=None)
        to_send = length if cut is None else min(cut, length)
        pause = behaviour.pause_after
        first = to_send if pause is None else min(pause, to_send)
        try:
            with open(path, "rb") as f:
                for offset, count in ((start, first), (start + first, to_send - first)):
                    if offset > start:
                        owner._pause()
                    if behaviour.rate is None:
                        self._sendfile(f.fileno(), offset, count, record)
                    else:
                        self._paced(f.fileno(), offset, count, behaviour.rate, record)
                    if first == to_send:
                        break
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if cut is not None and cut < length:
            if behaviour.stall_after is not None and behaviour.stall_after == cut:
                owner._stopping.wait()
            self.close_connection = True

    def _sendfile(self, fd: int, offset: int, count: int, record: _Record) -> None:
        owner = self.server.owner
        sock = self.connection.fileno()
        while count > 0:
            block = min(count, _SENDFILE_BLOCK)
            owner._count(record, body=block)  # before it can reach the client
            sent = os.sendfile(sock, fd, offset, block)
            if sent == 0:
                owner._count(record, body=-block)
                raise BrokenPipeError("the file ended early")
            owner._count(record, body=sent - block)
            offset += sent
            count -= sent

    def _paced(self, fd: int, offset: int, count: int, rate: float, record: _Record) -> None:
        owner = self.server.owner
        block = max(1024, min(_BLOCK, int(rate / 20)))
        began, sent = time.monotonic(), 0
        while sent < count:
            data = os.pread(fd, min(block, count - sent), offset + sent)
            if not data:
                raise BrokenPipeError("the file ended early")
            owner._count(record, body=len(data))
            self.connection.sendall(data)
            sent += len(data)
            ahead = began + sent / rate - time.monotonic()
            if ahead > 0 and owner._stopping.wait(ahead):  # pacing, ended early by stop()
                raise BrokenPipeError("the server is stopping")


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single byte range as (first, last), or None when it cannot be satisfied."""
    match = _RANGE.match(value.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # bytes=-N: the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[FileServer]:
    """A started FileServer serving tmp_path/"www"; stopped (connections closed) at teardown."""
    root = tmp_path / "www"
    root.mkdir()
    with FileServer(root) as server:
        yield server


@contextmanager
def never_accepting() -> Iterator[tuple[str, int]]:
    """(host, port) of a listener whose accept queue is full: connects there time out.

    Linux keeps backlog + 1 completed connections waiting for accept(); with a backlog of 0
    one filler connection fills the queue and later SYNs are dropped, so a client's connect
    hangs until its own timeout, like a host that never answers.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        filler.settimeout(5)
        filler.connect(address)
        yield "127.0.0.1", int(address[1])
    finally:
        filler.close()
        listener.close()


@contextmanager
def refusing() -> Iterator[tuple[str, int]]:
    """(host, port) of a bound socket that does not listen: connects there are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield "127.0.0.1", int(sock.getsockname()[1])
    finally:
        sock.close()
