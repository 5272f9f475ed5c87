"""Run one `reconcile` command inside this process and count its libvirt calls.

    python benchmarks/inprocess.py -- --once -m DIR -c URI --lock-dir DIR -o json

It runs `controller.cli.main(ARGS)` exactly as the `reconcile` console script does, and
counts libvirt calls two ways, without changing the controller's code:

- `libvirt_calls`: every method called on a libvirt-python connection or domain object,
  counted by wrapping those classes' methods (so not trusting the controller), except
  the few that never reach libvirtd (name, UUID, ID, connect); `by_method` breaks it down
  and `slowest_call` gives each method's slowest call in seconds. Opening and closing the
  connection are not counted.
- `hypervisor_calls`: the controller's own `Connection.calls` counters, read from every
  Connection the command built (found by wrapping `Connection.__init__`).

Prints one JSON object; `seconds` is the command's time inside the process (no
interpreter start-up, no imports).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import libvirt

from controller import cli
from controller.virt import Connection

#: Methods answered from the handle itself, without a round trip to libvirtd.
LOCAL = {"name", "UUID", "UUIDString", "ID", "connect", "c_pointer", "close"}


def count_libvirt_calls(counter: Counter[str], slowest: dict[str, float]) -> None:
    """Count calls per method in `counter`, and keep each method's slowest call in `slowest`."""
    lock = threading.Lock()

    def wrap(cls_name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        key = f"{cls_name}.{method.__name__}"

        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                with lock:
                    counter[key] += 1
                    slowest[key] = max(slowest.get(key, 0.0), took)
        return counted

    for cls in (libvirt.virConnect, libvirt.virDomain):
        for attr, value in list(vars(cls).items()):
            if callable(value) and not attr.startswith("_") and attr not in LOCAL:
                setattr(cls, attr, wrap(cls.__name__, value))


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    made: list[Connection] = []
    original = Connection.__init__

    def keeping_init(self: Connection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    Connection.__init__ = keeping_init  # type: ignore[method-assign]
    by_method: Counter[str] = Counter()
    slowest: dict[str, float] = {}
    count_libvirt_calls(by_method, slowest)
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    seconds = time.perf_counter() - start
    results: dict[str, int] = {}
    try:
        document = json.loads(out.getvalue())
        results = dict(Counter(vm["result"] for vm in document.get("vms", [])))
    except (ValueError, AttributeError, KeyError, TypeError):
        pass  # text output: no per-result counts
    print(json.dumps({"exit": code, "libvirt_calls": sum(by_method.values()),
                      "hypervisor_calls": sum(h.calls for h in made),
                      "connections": len(made), "seconds": seconds, "results": results,
                      "by_method": dict(by_method.most_common()),
                      "slowest_call": {k: round(v, 4) for k, v in sorted(
                          slowest.items(), key=lambda item: -item[1])}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
