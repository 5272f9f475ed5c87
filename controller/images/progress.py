"""Progress of a fetch: the callback type, sizes as people read them, and the terminal line.

`fetch_image` reports (bytes done, total) through a `ProgressCallback`; the CLI passes a
`ProgressLine` when stderr is a terminal. `human_size` is also used by the cache and the
download code for their messages.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

__all__ = ["ProgressCallback", "ProgressLine", "human_size", "report"]

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None when the server does not say)."""


def report(progress: ProgressCallback | None, done: int, total: int | None) -> None:
    """Call `progress` if there is one."""
    if progress is not None:
        progress(done, total)


def human_size(n: float | None) -> str:
    """A size in bytes as people read it: `512 B`, `1.5 GiB`; `?` for None."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """A `progress` callback that keeps one `\\r`-rewritten line on a terminal.

    Writes nothing unless `stream` is a TTY; repaints at most once per `interval` seconds;
    `close()` (or leaving the `with`) paints the last state and ends the line. Used by the
    CLI around `fetch_image` when stderr is a terminal:

        with ProgressLine(label="debian-12") as line:
            fetch_image(url=..., sha256=..., cache_dir=..., progress=line)
    """

    def __init__(self, *, label: str, stream: TextIO | None = None, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False
        self._start: tuple[float, int] | None = None
        self._last: tuple[int, int | None] | None = None
        self._painted_at: float | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._start is None:
            self._start = (now, done)
        self._last = (done, total)
        if self._painted_at is None or now - self._painted_at >= self.interval:
            self._paint(now, end="")

    def close(self) -> None:
        """Paint the final state and end the line (only if anything was reported)."""
        if self.enabled and self._last is not None:
            self._paint(self.clock(), end="\n")
            self._last = None

    def render(self, done: int, total: int | None, *, elapsed: float, since: int = 0) -> str:
        """The text of the line: done, of total and percent when known, and the mean rate."""
        text = f"{self.label}: {human_size(done)}"
        if total:
            text += f" of {human_size(total)} ({100 * done // total}%)"
        if elapsed > 0 and done > since:
            text += f", {human_size((done - since) / elapsed)}/s"
        return text

    def _paint(self, now: float, *, end: str) -> None:
        assert self._last is not None and self._start is not None
        done, total = self._last
        started, since = self._start
        self.stream.write("\r\x1b[K" + self.render(done, total, elapsed=now - started,
                                                   since=since) + end)
        self.stream.flush()
        self._painted_at = now

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
