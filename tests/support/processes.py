"""Child processes of a test: following one's output while it runs (a thread that reads
one of its text streams line by line, keeps every line, may act on each at once (count
it, kill the process on it), and lets the test wait, with a deadline, until the lines say
something), and the `children` fixture that ends and reaps what a test started.

Called by tests/service/support.py (the service's log), tests/reliability (counting step
lines; `children`), tests/e2e/test_races.py (a kill -9 on a chosen line) and
tests/unit/test_fetch.py (`children`).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO

import pytest


class LineReader:
    """Reads `stream` in a daemon thread until its end. `on_line`, when given, is called
    with each line (without its newline) in that thread, as soon as it is read and with
    the reader's lock held, so what it records is seen together with the line."""

    def __init__(self, stream: IO[str], *, on_line: Callable[[str], None] | None = None):
        self._stream = stream
        self._on_line = on_line
        self._lines: list[str] = []
        self._ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._stream:
                line = raw.rstrip("\n")
                with self._cond:
                    self._lines.append(line)
                    if self._on_line is not None:
                        self._on_line(line)
                    self._cond.notify_all()
        except ValueError:
            pass  # the owner closed the stream (the `children` fixture does, at the end)
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    @property
    def lines(self) -> list[str]:
        """Every line read so far (a copy)."""
        with self._cond:
            return list(self._lines)

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (the process closed it, or exited)."""
        with self._cond:
            return self._ended

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float, *,
                 what: str) -> bool:
        """Wait until `predicate(lines)` holds (True) or the stream has ended without it
        (False); fail after `timeout` seconds, with `what` and every line read."""
        with self._cond:
            done = self._cond.wait_for(lambda: predicate(self._lines) or self._ended, timeout)
            if not done:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}:\n"
                                     + "\n".join(self._lines))
            return predicate(self._lines)

    def join(self, timeout: float = 10.0) -> None:
        """Wait (up to `timeout` seconds) for the reader to reach the stream's end."""
        self._thread.join(timeout)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts (it appends them); when the test ends, any still running
    (a failed test) is killed, by its PID, and every one is reaped and its pipes closed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream:
                stream.close()
