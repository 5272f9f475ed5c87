"""Timed child runs: every number of the benchmark is one child process's wall time and RSS.

Called by the sections (`sections/*.py`), `machine.py` and `profiles.py`: `run_timed`
runs a command in a session of its own and returns its wall time (fork to exit) and its
own peak RSS (`wait4`); `check_once` and `check_floor` stop the benchmark (`BenchError`)
when a run did not do what it must; `summary` is the JSON of a list of runs. `bench.py`
calls `cache_bytecode` once before anything is timed, and `stop_children` on its way out.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent.parent
FLOORS = BENCHMARKS / "floors"
RESULTS = BENCHMARKS / "results"
PY = sys.executable
BIN = Path(sys.executable).parent
RECONCILE = BIN / "reconcile"

Json = dict[str, Any]


class BenchError(Exception):
    """A benchmark step did not do what it must: the numbers would be meaningless."""


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system time of the child and its threads (wait4)


_children: list[subprocess.Popen[bytes]] = []


def run_timed(argv: Sequence[str | Path], *, timeout: float = 900.0) -> Run:
    """Run a command; its wall time (fork to exit) and its own peak RSS (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        # A session of its own, so that stopping it also stops what it started (py-spy's
        # child): an orphaned `reconcile --once` would redefine domains being cleaned up.
        proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        _children.append(proc)
        killer = threading.Timer(timeout, _kill_group, (proc,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        _children.remove(proc)
        out.seek(0)
        err.seek(0)
        return Run(seconds, usage.ru_maxrss, proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   usage.ru_utime + usage.ru_stime)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its group id is its pid: start_new_session
    except ProcessLookupError:
        pass


def stop_children() -> None:
    """Kill every child still running (and what it started), and reap it."""
    for proc in list(_children):
        _kill_group(proc)
        if proc.returncode is None:
            proc.wait()
        _children.remove(proc)


def tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _json_of(run: Run, what: str) -> Json:
    try:
        document: Json = json.loads(run.stdout)
    except ValueError:
        raise BenchError(f"{what}: exit {run.returncode}, no JSON on stdout; stderr:\n"
                         f"{tail(run.stderr)}") from None
    return document


def check_once(run: Run, what: str, *, n: int, allowed: set[str],
               steps: set[str] | None = None) -> None:
    """A `reconcile --once -o json` run did exactly what the benchmark needs."""
    document = _json_of(run, what)
    vms = document.get("vms", [])
    results = Counter(vm["result"] for vm in vms)
    if run.returncode != 0 or len(vms) != n or not set(results) <= allowed:
        errors = [vm.get("error") for vm in vms if vm.get("error")][:3]
        raise BenchError(f"{what}: exit {run.returncode}, {len(vms)} VMs (want {n}), "
                         f"results {dict(results)} (want only {sorted(allowed)}); "
                         f"errors {errors}; stderr:\n{tail(run.stderr)}")
    if steps:
        for vm in vms:
            actions = {step["action"] for step in vm.get("steps", [])}
            if not steps <= actions:
                raise BenchError(f"{what}: {vm['name']} ran {sorted(actions)}, "
                                 f"expected at least {sorted(steps)}")


def check_floor(run: Run, what: str, *, at_least: int) -> None:
    """A floor script exited 0 and printed a count of at least `at_least` domains/files."""
    count = int(run.stdout.strip() or -1) if run.stdout.strip().isdigit() else -1
    if run.returncode != 0 or count < at_least:
        raise BenchError(f"{what}: exit {run.returncode}, printed {run.stdout.strip()!r} "
                         f"(want >= {at_least}); stderr:\n{tail(run.stderr)}")


def summary(runs: Sequence[Run]) -> Json:
    times = [r.seconds for r in runs]
    cpu = [r.cpu_seconds for r in runs]
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "times": times, "max_rss_kib": [r.max_rss_kib for r in runs],
            "cpu": {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu),
                    "times": cpu}}


def paired(ours: Sequence[Run], floors: Sequence[Run]) -> Json:
    """The ratios of alternating pairs (run i of ours over run i of the floor), wall and
    CPU: median, min and max, so that a noisy run shows as a wide spread."""
    def spread(values: list[float]) -> Json:
        return {"median": statistics.median(values), "min": min(values), "max": max(values),
                "values": values}
    return {"wall": spread([a.seconds / b.seconds for a, b in zip(ours, floors, strict=True)]),
            "cpu": spread([a.cpu_seconds / max(b.cpu_seconds, 1e-6)
                           for a, b in zip(ours, floors, strict=True)])}


def cache_bytecode(prefix: Path) -> str:
    """Every child runs with its bytecode cached, as in any installed package (pip compiles
    .pyc files at install time). Without this, PYTHONDONTWRITEBYTECODE in the environment
    (or a read-only source tree) makes each `reconcile` recompile its own modules from
    source on every run, ~40 ms, while the floor imports only pre-compiled ones. The cache
    is a fresh PYTHONPYCACHEPREFIX, so the source tree is not written to; it is filled
    here, before anything is timed."""
    inherited = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    modules = ("libvirt", "yaml", "fastjsonschema", "controller.entry", "controller.proof_record",
               "controller.cli", "controller.reconciler",
               "controller.executor", "controller.service", "controller.export", "tenacity",
               "jsonschema")
    warm = (f"import importlib\nfor m in {modules!r}:\n"
            "    try: importlib.import_module(m)\n    except ImportError: pass")
    subprocess.run([PY, "-c", warm], check=False)
    note = "cached in a fresh PYTHONPYCACHEPREFIX (filled before timing)"
    if inherited:
        note += "; PYTHONDONTWRITEBYTECODE was set in the environment and is unset for children"
    return note
