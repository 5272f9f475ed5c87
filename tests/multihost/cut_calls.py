"""The child process of test_cut_calls.py: calls in flight on a host whose link is cut.

Run as `python -m tests.multihost.cut_calls CUT_URI HEALTHY_URI INTERVAL COUNT`, driven
over stdin and stdout by the test, which owns the link: it prints `calling` once four
threads keep calls going on CUT_URI (every slot of one connection busy), reads `cut`,
prints `returned SECONDS` (or `stuck`) once every call on the cut host has returned, reads
`restored`, reconnects, and prints a JSON line of what it saw. Meanwhile a connection to
HEALTHY_URI is called every 0.2 s. Its own process: a crash in libvirt's client shows
as its exit status, not as a dead test run.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import libvirt

from controller.errors import ConnectionLost
from controller.virt.events import WatchedConnection, start_event_loop
from controller.virt.lines import CALLS_PER_CONNECTION

#: How long the calls on the cut host may take to return, past keepalive's death.
MARGIN = 10.0
RECONNECT_BOUND = 60.0


def _watched(uri: str, keepalive: tuple[int, int], closes: list[str]) -> WatchedConnection:
    return WatchedConnection(uri, on_event=lambda _name, _event: None,
                             on_open=lambda: None, on_close=closes.append,
                             keepalive=keepalive)


def main(cut_uri: str, healthy_uri: str, interval: int, count: int) -> dict[str, object]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    start_event_loop()
    keepalive = (interval, count)
    cut_closes: list[str] = []
    healthy_closes: list[str] = []
    cut = _watched(cut_uri, keepalive, cut_closes)
    healthy = _watched(healthy_uri, keepalive, healthy_closes)
    cut.connect()
    healthy.connect()
    errors: list[str] = []
    healthy_errors: list[str] = []
    stop = threading.Event()
    answered = threading.Semaphore(0)

    def caller() -> None:
        first = True
        while True:
            try:
                with cut.call("cannot list domains") as conn:
                    conn.listAllDomains(0)
            except ConnectionLost as error:
                errors.append(str(error))
                return
            if first:
                answered.release()
                first = False

    def healthy_caller() -> None:
        while not stop.wait(0.2):
            try:
                with healthy.call("cannot list domains") as conn:
                    conn.listAllDomains(0)
            except ConnectionLost as error:
                healthy_errors.append(str(error))

    callers = [threading.Thread(target=caller, daemon=True, name=f"caller-{index}")
               for index in range(CALLS_PER_CONNECTION)]
    for thread in callers:
        thread.start()
    watcher = threading.Thread(target=healthy_caller, daemon=True)
    watcher.start()
    for _ in callers:
        if not answered.acquire(timeout=30):
            raise SystemExit("the calls on the host to cut never answered")
    _say("calling")
    _expect("cut")
    started = time.monotonic()
    bound = interval * (count + 1) + MARGIN
    for thread in callers:
        thread.join(max(0.0, started + bound - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in callers)
    returned = time.monotonic() - started
    _say("stuck" if stuck else f"returned {returned:.1f}")
    _expect("restored")
    started = time.monotonic()
    reconnect = threading.Thread(target=cut.reconnect, daemon=True)
    reconnect.start()
    reconnect.join(RECONNECT_BOUND)
    reconnected = None if reconnect.is_alive() else time.monotonic() - started
    listed = None
    if reconnected is not None:
        with cut.call("cannot list domains") as conn:
            listed = len(conn.listAllDomains(0))
    stop.set()
    watcher.join(5)
    return {"stuck": stuck, "returned": round(returned, 1), "errors": sorted(set(errors)),
            "reconnected": reconnected, "listed": listed, "cut_closes": cut_closes,
            "healthy_errors": healthy_errors, "healthy_closes": healthy_closes}


def _say(line: str) -> None:
    print(line, flush=True)


def _expect(word: str) -> None:
    line = sys.stdin.readline().strip()
    if line != word:
        raise SystemExit(f"expected {word!r} from the test, got {line!r}")


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    _say(json.dumps(result))
