"""Section `service`: the long-running service's latencies, idle CPU and RSS.

Runs `service_latency.py --private-libvirtd` (a libvirtd of its own, in its own mount
namespace, from tests/service/support.py) with the plan's arguments: manifest edit →
first libvirt step and → running with the new memory, external destroy → running
again, CPU and RSS over an idle period, RSS after a SIGHUP resync of more VMs. It
records the script's JSON as it is, with the host's other domains before and after.
Run by `bench.py` (`--only service`); the targets are absolute, there is no floor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from harness.context import Bench
from harness.runs import BENCHMARKS, PY, BenchError, Json, run_timed, tail


def measure(b: Bench, *, service_args: Sequence[str]) -> Json:
    """service_latency.py on a private libvirtd of its own (tests/service/support.py), so
    that other users of the host's daemon, their domains and their events, neither disturb
    the latencies nor wake the service during the idle minute."""
    numbers = b.tmp / "service.json"
    argv: list[str | Path] = [PY, BENCHMARKS / "service_latency.py", "--private-libvirtd",
                              *service_args, "--json", numbers]
    others = b.host.others()
    run = run_timed(argv, timeout=3600)
    if run.returncode != 0 or not numbers.exists():
        raise BenchError(f"service: exit {run.returncode}; stdout:\n{tail(run.stdout, 12)}\n"
                         f"stderr:\n{tail(run.stderr)}")
    result: Json = json.loads(numbers.read_text())
    after = b.host.others()
    b.progress("\n".join("  " + line for line in run.stdout.strip().splitlines()))
    return {"result": result, "args": [str(a) for a in service_args],
            "others": [others, after]}

