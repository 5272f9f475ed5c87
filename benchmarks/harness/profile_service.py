"""Run the service under cProfile, every thread on its own CPU clock, from its first
SIGHUP on: what a full resync costs, without the start-up and the first pass.

    python benchmarks/harness/profile_service.py OUT.pstats RECONCILE-ARGS...

Used by `service_latency.py --profile FILE` (which sends the SIGHUP). Each thread gets a
`cProfile.Profile(time.thread_time)` once the SIGHUP has come: the main thread in the
signal handler, a worker the next time it takes a name from the queue, a thread started
later (a resync's listers) when it starts. At exit their stats are merged into OUT.pstats
(`python -m pstats OUT.pstats`, or `summary` below). libvirt's event thread is not
profiled (nothing happens there in a resync of converged VMs).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from typing import Any

_armed = threading.Event()
_profilers: list[cProfile.Profile] = []
_lock = threading.Lock()
_local = threading.local()


def _ensure() -> None:
    """Profile the calling thread from now on, once armed."""
    if not _armed.is_set() or getattr(_local, "profiler", None) is not None:
        return
    profiler = cProfile.Profile(time.thread_time)
    _local.profiler = profiler
    with _lock:
        _profilers.append(profiler)
    profiler.enable()


def _stop() -> None:
    profiler = getattr(_local, "profiler", None)
    if profiler is not None:
        profiler.disable()


def _patch() -> None:
    from controller.service.service import Service
    from controller.workqueue import WorkQueue

    on_signal = Service._on_signal
    get = WorkQueue.get
    run = threading.Thread.run

    def signalled(self: Service, signum: int, frame: Any) -> None:
        if signum == 1:  # SIGHUP
            _armed.set()
            _ensure()
        on_signal(self, signum, frame)

    def got(self: WorkQueue, timeout: float | None = None) -> str | None:
        name = get(self, timeout)
        _ensure()
        return name

    def runs(self: threading.Thread) -> None:
        _ensure()
        try:
            run(self)
        finally:
            _stop()

    Service._on_signal = signalled  # type: ignore[method-assign]
    WorkQueue.get = got  # type: ignore[method-assign]
    threading.Thread.run = runs  # type: ignore[method-assign]


def summary(path: str, top: int = 40) -> str:
    """The top functions by own time and by cumulative time, as text."""
    import io

    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: list[str]) -> int:
    out, args = argv[0], argv[1:]
    _patch()
    from controller.cli import main as reconcile

    sys.argv = ["reconcile", *args]
    try:
        code = reconcile()
    finally:
        _stop()
        with _lock:
            profilers = list(_profilers)
        if profilers:
            stats = pstats.Stats(profilers[0])
            for profiler in profilers[1:]:
                stats.add(profiler)
            stats.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
