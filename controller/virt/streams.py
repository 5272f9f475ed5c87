"""Streams of bytes between local files and libvirt streams, hashed on the way. Called by
`controller.virt.storage` only (uploads, downloads, transfers between hosts).

`send_file` sends a local file on an upload stream (holes as holes, from SEEK_DATA and
SEEK_HOLE, when sparse); `receive` drains a download stream into callbacks; `Hasher`
hashes what passes in a thread of its own, so that hashing overlaps the stream calls
(hashlib and libvirt's stream calls both release the GIL).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import libvirt

#: Bytes per stream message: libvirt's own maximum payload (256 KiB less the header).
CHUNK = 262120

_ZEROS = bytes(1 << 20)


def data_sections(fd: int, size: int) -> Iterator[tuple[bool, int, int]]:
    """(is_data, offset, length) of a local file, from SEEK_DATA/SEEK_HOLE."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            data = size
        if data > offset:
            yield False, offset, data - offset
            offset = data
            continue
        hole = os.lseek(fd, offset, os.SEEK_HOLE)
        yield True, offset, hole - offset
        offset = hole


class Hasher:
    """sha256 in a thread of its own, so hashing overlaps the stream's sends/receives
    (hashlib and libvirt's stream calls both release the GIL)."""

    def __init__(self) -> None:
        import hashlib  # here: loading OpenSSL costs ~4 ms of every start-up, and most
        # passes stream nothing

        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | int | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, int):  # a hole of that many zero bytes
                while item > 0:
                    step = min(item, len(_ZEROS))
                    self._hash.update(_ZEROS[:step] if step < len(_ZEROS) else _ZEROS)
                    item -= step
            else:
                self._hash.update(item)

    def data(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def hole(self, length: int) -> None:
        self._queue.put(length)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._hash.hexdigest()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)


class NoHasher(Hasher):
    """A hasher that hashes nothing (Check.NONE)."""

    def __init__(self) -> None:
        pass

    def data(self, chunk: bytes) -> None:
        pass

    def hole(self, length: int) -> None:
        pass

    def hexdigest(self) -> str:
        return ""

    def stop(self) -> None:
        pass


def send_file(stream: Any, fd: int, size: int, *, sparse: bool, hasher: Hasher) -> None:
    """Send `size` bytes of `fd` on `stream` (holes as holes when `sparse`)."""
    sections = data_sections(fd, size) if sparse else iter([(True, 0, size)])
    for is_data, offset, length in sections:
        if not is_data:
            stream.sendHole(length, 0)
            hasher.hole(length)
            continue
        os.lseek(fd, offset, os.SEEK_SET)
        left = length
        while left > 0:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                raise OSError(f"the file ended {left} bytes early (was it changed?)")
            hasher.data(chunk)
            sent = 0
            while sent < len(chunk):  # a blocking stream sends all, but be exact
                count = stream.send(chunk[sent:] if sent else chunk)
                if count < 0:
                    raise OSError("the stream would block")
                sent += count
            left -= len(chunk)


def receive(stream: Any, *, sparse: bool, hasher: Hasher,
             data: Callable[[bytes], None], hole: Callable[[int], None]) -> int:
    """Receive a whole stream; returns the byte count (holes included)."""
    total = 0
    flags = libvirt.VIR_STREAM_RECV_STOP_AT_HOLE if sparse else 0
    while True:
        got = stream.recvFlags(CHUNK, flags) if sparse else stream.recv(CHUNK)
        if got == -3:
            length = int(stream.recvHole(0))
            hasher.hole(length)
            hole(length)
            total += length
            continue
        if isinstance(got, int):
            raise OSError(f"stream receive returned {got}")
        if not got:
            return total
        hasher.data(got)
        data(got)
        total += len(got)
