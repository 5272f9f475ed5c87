"""The performance benchmark of issue 5: `reconcile` measured side by side with its floor.

    python benchmarks/bench.py [--quick] [--only noop,converge,validate] [--no-profile]

Run it with the interpreter of the installation to measure (`make bench` uses .venv's):
the `reconcile` command is the one next to that interpreter, and every floor script runs
with the same interpreter, so both pay the same start-up. Needs root and a libvirtd on
qemu:///system (`make bench` starts one).

Sections (see benchmarks/README.md for what the numbers mean):

  noop      a no-op `reconcile --once` over N managed stopped tiny domains, N = 10, 100,
            1000, vs benchmarks/floors/noop.py; in-process libvirt call count; peak RSS
  converge  a cold converge of N running tiny guests (N = 10, and 30 at --workers 1, 2, 4,
            8) and a change pass restarting all of them, vs benchmarks/floors/converge.py
  validate  `reconcile validate` of 1,000 and 10,000 manifests, next to a parse-only
            reference (benchmarks/floors/parse.py)

Writes benchmarks/results/RESULTS.md, results.json (raw numbers) and time_vs_n.png
(when matplotlib imports); --quick writes to benchmarks/results/quick/ instead. With
--only, the sections not run are kept from the previous results.json. Every domain it
creates is named bench-<8 hex>-..., and all of them are removed at the end, on Ctrl-C,
SIGTERM and on errors; no other domain is ever changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import libvirt

from controller.virt import connections_for

HERE = Path(__file__).resolve().parent
FLOORS = HERE / "floors"
RESULTS = HERE / "results"
PY = sys.executable
BIN = Path(sys.executable).parent
RECONCILE = BIN / "reconcile"
SECTIONS = ("noop", "converge", "validate", "service")

Json = dict[str, Any]


class BenchError(Exception):
    """A benchmark step did not do what it must: the numbers would be meaningless."""


# --- running a process and timing it --------------------------------------------------

@dataclass
class Run:
    seconds: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


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
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its group id is its pid: start_new_session
    except ProcessLookupError:
        pass


def _stop_children() -> None:
    for proc in list(_children):
        _kill_group(proc)
        if proc.returncode is None:
            proc.wait()
        _children.remove(proc)


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _json_of(run: Run, what: str) -> Json:
    try:
        document: Json = json.loads(run.stdout)
    except ValueError:
        raise BenchError(f"{what}: exit {run.returncode}, no JSON on stdout; stderr:\n"
                         f"{_tail(run.stderr)}") from None
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
                         f"errors {errors}; stderr:\n{_tail(run.stderr)}")
    if steps:
        for vm in vms:
            actions = {step["action"] for step in vm.get("steps", [])}
            if not steps <= actions:
                raise BenchError(f"{what}: {vm['name']} ran {sorted(actions)}, "
                                 f"expected at least {sorted(steps)}")


def check_floor(run: Run, what: str, *, at_least: int) -> None:
    count = int(run.stdout.strip() or -1) if run.stdout.strip().isdigit() else -1
    if run.returncode != 0 or count < at_least:
        raise BenchError(f"{what}: exit {run.returncode}, printed {run.stdout.strip()!r} "
                         f"(want >= {at_least}); stderr:\n{_tail(run.stderr)}")


def summary(runs: Sequence[Run]) -> Json:
    times = [r.seconds for r in runs]
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "times": times, "max_rss_kib": [r.max_rss_kib for r in runs]}


# --- the host: our domains only -----------------------------------------------------------

class Host:
    """The libvirt host, seen through our prefix: we count others, we touch only ours."""

    def __init__(self, uri: str, prefix: str):
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.uri = uri
        self.prefix = prefix
        self.conn = libvirt.open(uri)

    def names(self) -> list[str]:
        names = []
        for dom in self.conn.listAllDomains(0):
            try:
                names.append(dom.name())
            except libvirt.libvirtError:
                continue
        return names

    def others(self) -> Json:
        """How busy the host is with domains that are not ours (other users, tests)."""
        total = active = 0
        for dom in self.conn.listAllDomains(0):
            try:
                if dom.name().startswith(self.prefix):
                    continue
                total += 1
                active += bool(dom.isActive())
            except libvirt.libvirtError:
                continue
        return {"domains": total, "running": active, "loadavg": list(os.getloadavg())}

    def active(self, names: Sequence[str]) -> int:
        running = 0
        for name in names:
            try:
                running += bool(self.conn.lookupByName(name).isActive())
            except libvirt.libvirtError:
                pass
        return running

    def max_memory_kib(self, name: str) -> int:
        return int(self.conn.lookupByName(name).maxMemory())

    def remove(self, names: Sequence[str] | None = None) -> int:
        """Destroy and undefine our domains (all of them, or `names`), in parallel."""
        ours = [n for n in (self.names() if names is None else names)
                if n.startswith(self.prefix)]
        if ours:
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(self._remove_one, ours))
        left = [n for n in self.names() if n in set(ours)]
        if left:
            raise BenchError(f"domains left behind: {left[:5]}")
        return len(ours)

    def _remove_one(self, name: str) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                dom = self.conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # a busy domain (its job lock is held): try again

    def destroy_seconds(self, virt_type: str, runs: int = 3) -> float:
        """Median time of libvirt's destroy of one running tiny guest: a fact of the host
        that every change pass pays (it waits until the QEMU process is reaped)."""
        sys.path.insert(0, str(FLOORS))
        from converge import domain_xml  # the floor's own guest

        name = f"{self.prefix}probe"
        dom = self.conn.defineXML(domain_xml(name, memory_mib=64, virt_type=virt_type))
        took = []
        try:
            for _ in range(runs):
                dom.create()
                started = time.perf_counter()
                dom.destroy()
                took.append(time.perf_counter() - started)
        finally:
            self.remove([name])
        return statistics.median(took)

    def close(self) -> None:
        self.conn.close()


# --- manifests ----------------------------------------------------------------------------

def manifest(name: str, *, state: str, memory_mib: int, virt_type: str) -> str:
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  state: {state}\n  memory: {memory_mib}MiB\n  vcpus: 1\n"
            f"  type: {virt_type}\n  stopTimeout: 0\n")


def write_manifests(directory: Path, names: Sequence[str], **spec: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.yaml").write_text(manifest(name, **spec))


# --- the benchmark context -----------------------------------------------------------------

@dataclass
class Plan:
    noop_sizes: list[int]
    noop_runs: int
    converge: list[tuple[int, int, bool]]  # (N, workers, with a change pass)
    converge_runs: int
    validate_sizes: list[int]
    validate_runs: int
    profile: bool
    service_args: list[str] = field(default_factory=list)


@dataclass
class Bench:
    uri: str
    host: Host
    tmp: Path
    virt_type: str
    default_workers: int
    out: Path
    profile: bool
    progress: Callable[[str], None] = print
    profiles: dict[str, Json] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.host.prefix

    def once(self, manifests: Path, locks: Path, *extra: str) -> list[str]:
        return [str(RECONCILE), "--once", "-m", str(manifests), "-c", self.uri,
                "--lock-dir", str(locks), "-o", "json", *extra]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# --- 1. no-op pass -------------------------------------------------------------------------

def bench_noop(b: Bench, sizes: Sequence[int], runs: int) -> Json:
    manifests, locks = b.tmp / "noop", b.tmp / "locks-noop"
    rows: list[Json] = []
    converge_seconds: dict[str, float] = {}
    names: list[str] = []
    for n in sizes:
        new = [f"{b.prefix}n{i:05d}" for i in range(len(names), n)]
        names += new
        write_manifests(manifests, new, state="stopped", memory_mib=64, virt_type=b.virt_type)
        first = run_timed(b.once(manifests, locks))
        check_once(first, f"no-op N={n}: converging", n=n, allowed={"converged", "unchanged"})
        converge_seconds[str(n)] = first.seconds
        check_once(run_timed(b.once(manifests, locks)), f"no-op N={n}: warm-up", n=n,
                   allowed={"unchanged"})
        others = b.host.others()
        floor_runs, reconcile_runs = [], []
        for _ in range(runs):
            floor = run_timed([PY, FLOORS / "noop.py", b.uri])
            check_floor(floor, f"no-op floor N={n}", at_least=n)
            floor_runs.append(floor)
            run = run_timed(b.once(manifests, locks))
            check_once(run, f"no-op N={n}", n=n, allowed={"unchanged"})
            reconcile_runs.append(run)
        listed = n + b.host.others()["domains"]  # the pass reads every domain on the host
        counted = _inprocess(b.once(manifests, locks)[1:], f"no-op N={n}")
        row: Json = {"n": n, "floor": summary(floor_runs),
                     "reconcile": summary(reconcile_runs), "calls": counted["libvirt_calls"],
                     "domains_listed": listed,
                     "calls_per_vm": counted["libvirt_calls"] / listed,
                     "hypervisor_calls": counted["hypervisor_calls"],
                     "calls_by_method": counted["by_method"],
                     "slowest_call": counted.get("slowest_call", {}),
                     "inprocess_seconds": counted["seconds"], "others": others}
        row["ratio"] = row["reconcile"]["median"] / row["floor"]["median"]
        rows.append(row)
        b.progress(f"  no-op N={n}: floor {_ms(row['floor']['median'])}, reconcile "
                   f"{_ms(row['reconcile']['median'])} ({row['ratio']:.2f}x), "
                   f"{row['calls_per_vm']:.2f} calls per domain")
        if b.profile and n == max(sizes):
            b.profiles[f"noop-{n}"] = profile(b, f"noop-{n}", b.once(manifests, locks))
    b.progress(f"  removing {len(names)} domains")
    b.host.remove(names)
    return {"rows": rows, "converge_seconds": converge_seconds, "runs": runs}


def _inprocess(args: Sequence[str], what: str) -> Json:
    run = run_timed([PY, HERE / "inprocess.py", "--", *args])
    try:
        counted: Json = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"{what}: in-process run failed (exit {run.returncode}):\n"
                         f"{_tail(run.stderr)}") from None
    if counted["exit"] != 0:
        raise BenchError(f"{what}: in-process run exited {counted['exit']}: {counted}")
    return counted


# --- 2. cold converge and change pass ------------------------------------------------------

def bench_converge(b: Bench, configs: Sequence[tuple[int, int, bool]], runs: int) -> Json:
    samples: dict[tuple[int, int, str, str], list[Run]] = {}
    others: list[Json] = []
    for n, workers, with_change in configs:
        for index in range(runs):
            others.append(b.host.others())
            order = ("reconcile", "floor") if index % 2 == 0 else ("floor", "reconcile")
            for side in order:
                tag = f"{'r' if side == 'reconcile' else 'f'}{n}w{workers}x{index}"
                names = [f"{b.prefix}{tag}-{i:03d}" for i in range(n)]
                try:
                    measure = _converge_reconcile if side == "reconcile" else _converge_floor
                    for phase, run in measure(b, tag, names, workers, with_change):
                        samples.setdefault((n, workers, phase, side), []).append(run)
                finally:
                    b.host.remove(names)
        for phase in ("cold", "change") if with_change else ("cold",):
            floor = samples[(n, workers, phase, "floor")]
            ours = samples[(n, workers, phase, "reconcile")]
            b.progress(f"  {phase} N={n} workers={workers}: floor "
                       f"{_ms(statistics.median(r.seconds for r in floor))}, reconcile "
                       f"{_ms(statistics.median(r.seconds for r in ours))}")
    rows = []
    for (n, workers, phase, side), measured in samples.items():
        if side != "reconcile":
            continue
        row: Json = {"n": n, "workers": workers, "phase": phase,
                     "floor": summary(samples[(n, workers, phase, "floor")]),
                     "reconcile": summary(measured)}
        row["ratio"] = row["reconcile"]["median"] / row["floor"]["median"]
        rows.append(row)
    return {"rows": rows, "runs": runs, "default_workers": b.default_workers,
            "others": others}


Measured = Iterator[tuple[str, Run]]


def _converge_reconcile(b: Bench, tag: str, names: list[str], workers: int,
                        with_change: bool) -> Measured:
    manifests, locks = b.tmp / f"converge-{tag}", b.tmp / f"locks-{tag}"
    write_manifests(manifests, names, state="running", memory_mib=64, virt_type=b.virt_type)
    cold = run_timed(b.once(manifests, locks, "--workers", str(workers)))
    check_once(cold, f"cold converge {tag}", n=len(names), allowed={"converged"},
               steps={"define", "start"})
    _check_running(b, names, f"cold converge {tag}", memory_mib=64)
    yield "cold", cold
    if with_change:
        write_manifests(manifests, names, state="running", memory_mib=96,
                        virt_type=b.virt_type)
        change = run_timed(b.once(manifests, locks, "--workers", str(workers)))
        check_once(change, f"change pass {tag}", n=len(names), allowed={"converged"},
                   steps={"define", "start"})
        _check_running(b, names, f"change pass {tag}", memory_mib=96)
        yield "change", change


def _converge_floor(b: Bench, tag: str, names: list[str], workers: int,
                    with_change: bool) -> Measured:
    def floor(mode: str, memory_mib: int) -> Run:
        run = run_timed([PY, FLOORS / "converge.py", b.uri, mode, str(workers),
                         str(connections_for(workers)), str(memory_mib), b.virt_type, *names])
        check_floor(run, f"floor {mode} {tag}", at_least=len(names))
        _check_running(b, names, f"floor {mode} {tag}", memory_mib=memory_mib)
        return run

    yield "cold", floor("cold", 64)
    if with_change:
        yield "change", floor("change", 96)


def _check_running(b: Bench, names: Sequence[str], what: str, *, memory_mib: int) -> None:
    running = b.host.active(names)
    if running != len(names):
        raise BenchError(f"{what}: {running} of {len(names)} guests running")
    memory = b.host.max_memory_kib(names[0])
    if memory != memory_mib * 1024:
        raise BenchError(f"{what}: {names[0]} has {memory} KiB, want {memory_mib} MiB")


# --- 3. validation ---------------------------------------------------------------------------

def bench_validate(b: Bench, sizes: Sequence[int], runs: int) -> Json:
    rows = []
    for n in sizes:
        manifests = b.tmp / f"validate-{n}"
        write_manifests(manifests, [f"v{i:05d}" for i in range(n)], state="stopped",
                        memory_mib=64, virt_type=b.virt_type)
        command = [str(RECONCILE), "validate", "-m", str(manifests)]
        warm = run_timed(command)
        if warm.returncode != 0 or f"{n} valid VM manifests" not in warm.stdout:
            raise BenchError(f"validate N={n}: exit {warm.returncode}, "
                             f"{_tail(warm.stdout, 2)!r}; stderr:\n{_tail(warm.stderr)}")
        parse_runs, reconcile_runs = [], []
        for _ in range(runs):
            parse = run_timed([PY, FLOORS / "parse.py", manifests])
            check_floor(parse, f"parse reference N={n}", at_least=n)
            parse_runs.append(parse)
            run = run_timed(command)
            if run.returncode != 0:
                raise BenchError(f"validate N={n}: exit {run.returncode}")
            reconcile_runs.append(run)
        row: Json = {"n": n, "parse": summary(parse_runs), "reconcile": summary(reconcile_runs)}
        rows.append(row)
        b.progress(f"  validate N={n}: reconcile {_ms(row['reconcile']['median'])}, "
                   f"parse only {_ms(row['parse']['median'])}")
        if b.profile and n == min(sizes):
            b.profiles[f"validate-{n}"] = profile(b, f"validate-{n}", command)
        shutil.rmtree(manifests)
    return {"rows": rows, "runs": runs}


# --- 4. the service --------------------------------------------------------------------------

def bench_service(b: Bench, service_args: Sequence[str]) -> Json:
    """service_latency.py on a private libvirtd of its own (tests/support/sandbox.py), so
    that other users of the host's daemon, their domains and their events, neither disturb
    the latencies nor wake the service during the idle minute."""
    numbers = b.tmp / "service.json"
    argv = [PY, HERE / "service_latency.py", "--private-libvirtd", *service_args,
            "--json", numbers]
    others = b.host.others()
    run = run_timed(argv, timeout=3600)
    if run.returncode != 0 or not numbers.exists():
        raise BenchError(f"service: exit {run.returncode}; stdout:\n{_tail(run.stdout, 12)}\n"
                         f"stderr:\n{_tail(run.stderr)}")
    result: Json = json.loads(numbers.read_text())
    after = b.host.others()
    b.progress("\n".join("  " + line for line in run.stdout.strip().splitlines()))
    return {"result": result, "args": [str(a) for a in service_args],
            "others": [others, after]}


# --- profiles ----------------------------------------------------------------------------------

def _py_spy() -> str | None:
    found = BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def profile(b: Bench, name: str, command: Sequence[str]) -> Json:
    """Sample every thread of `command` with py-spy (threads it sees idle are left out)."""
    spy = _py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    folded = b.out / f"profile-{name}.folded"
    run = run_timed([spy, "record", "--rate", "1000", "--format", "raw", "--output",
                     str(folded), "--", *command])
    if not folded.exists():
        return {"skipped": f"py-spy failed (exit {run.returncode}): {_tail(run.stderr, 2)}"}
    report = summarise_profile(folded.read_text())
    report["command"] = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
    report["seconds"] = run.seconds
    report["file"] = folded.name
    (b.out / f"profile-{name}.txt").write_text(render_profile(name, report) + "\n")
    b.progress(f"  profile {name}: {report['samples']} samples -> profile-{name}.txt")
    return report


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")
_CATEGORIES = {
    "imports (loading modules)": ("_find_and_load",),
    "libvirt-python": ("libvirt.py", "libvirtmod"),
    "PyYAML": ("yaml/",),
    "jsonschema / referencing": ("jsonschema/", "referencing/"),
    "xml.etree": ("xml/etree",),
    "controller (own code)": ("controller/",),
    "tenacity": ("tenacity/",),
    "argparse": ("argparse.py",),
}


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3", "controller/"):
        if marker in path:
            path = path[path.index(marker):].removeprefix("site-packages/")
            break
    path = re.sub(r"^/lib/python3\.\d+/", "", path)
    return f"{match['func']} ({path})"


def summarise_profile(raw: str) -> Json:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        self_time[frames[-1]] += count
        for category, markers in _CATEGORIES.items():
            if any(marker in raw_frame for raw_frame in stack.split(";") for marker in markers):
                categories[category] += count

    def top(counter: Counter[str], k: int) -> list[Json]:
        return [{"frame": frame, "samples": count, "share": count / total if total else 0.0}
                for frame, count in counter.most_common(k)]

    return {"samples": total, "top_inclusive": top(inclusive, 25), "top_self": top(self_time, 20),
            "categories": {c: categories[c] / total if total else 0.0 for c in _CATEGORIES}}


def render_profile(name: str, report: Json) -> str:
    lines = [f"# profile {name}: {report['command']}",
             (f"py-spy, 1000 Hz, samples of every thread py-spy did not see idle (a thread "
              f"blocked inside a libvirt C call, waiting for libvirtd's reply, counts as busy: "
              f"that is the floor's share); {report['samples']} samples over "
              f"{report['seconds']:.2f} s wall. "
              f"Raw stacks: {report['file']} (flamegraph.pl / speedscope)."), "",
             "## share of samples by what is on the stack"]
    lines += [f"{share:6.1%}  {category}"
              for category, share in sorted(report["categories"].items(), key=lambda x: -x[1])]
    lines += ["", "## top inclusive (the frame is anywhere on the stack)"]
    lines += [f"{e['share']:6.1%}  {e['frame']}" for e in report["top_inclusive"]]
    lines += ["", "## top self (the frame is the one running)"]
    lines += [f"{e['share']:6.1%}  {e['frame']}" for e in report["top_self"]]
    return "\n".join(lines)


# --- the machine ------------------------------------------------------------------------------

def machine(host: Host) -> Json:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    lib = host.conn.getLibVersion()
    hv = host.conn.getVersion()
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[:1] if shutil.which(
                              "qemu-system-x86_64") else []
    startup = min(run_timed([PY, "-c", "pass"]).seconds for _ in range(5))
    import_libvirt = min(run_timed([PY, "-c", "import libvirt"]).seconds for _ in range(3))
    return {
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "libvirt": _version(lib),
        "libvirt_python": _dist_version("libvirt-python"),
        "hypervisor": f"{host.conn.getType()} {_version(hv)}",
        "qemu_binary": qemu[0] if qemu else "not found",
        "python": platform.python_version(),
        "python_path": PY,
        "python_startup_s": startup,
        "python_import_libvirt_s": import_libvirt,
        "virt_type": "kvm" if _kvm_usable() else "qemu",
        "uri": host.uri,
    }


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def code_state(note: str | None) -> Json:
    """Which reconcile is being measured: where it is imported from, and its git state."""
    spec = importlib.util.find_spec("controller")
    origin = Path(spec.origin).parent if spec and spec.origin else None
    state: Json = {"controller": str(origin) if origin else "not importable", "note": note}
    if origin is not None:
        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(origin), *args], capture_output=True,
                                  text=True, check=False)
            return done.stdout if done.returncode == 0 else ""
        state["commit"] = git("rev-parse", "--short", "HEAD").strip() or None
        dirty = git("status", "--porcelain", "--", ".", "../schemas", "../pyproject.toml")
        state["dirty"] = [line[3:] for line in dirty.splitlines() if line.strip()]
    return state


def _default_workers() -> int:
    try:
        from controller.cli import main_parser
        return int(main_parser().get_default("workers"))
    except (ImportError, AttributeError, TypeError, ValueError):  # another CLI: still run
        return 4


def _cache_bytecode(prefix: Path) -> str:
    """Every child runs with its bytecode cached, as in any installed package (pip compiles
    .pyc files at install time). Without this, PYTHONDONTWRITEBYTECODE in the environment
    (or a read-only source tree) makes each `reconcile` recompile its own modules from
    source on every run, ~40 ms, while the floor imports only pre-compiled ones. The cache
    is a fresh PYTHONPYCACHEPREFIX, so the source tree is not written to; it is filled
    here, before anything is timed."""
    inherited = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    modules = ("libvirt", "yaml", "fastjsonschema", "controller.cli", "controller.reconciler",
               "controller.executor", "controller.service", "controller.export", "tenacity",
               "jsonschema")
    warm = (f"import importlib\nfor m in {modules!r}:\n"
            "    try: importlib.import_module(m)\n    except ImportError: pass")
    subprocess.run([PY, "-c", warm], check=False)
    note = "cached in a fresh PYTHONPYCACHEPREFIX (filled before timing)"
    if inherited:
        note += "; PYTHONDONTWRITEBYTECODE was set in the environment and is unset for children"
    return note


def _kvm_usable() -> bool:
    return os.path.exists("/dev/kvm") and os.stat("/dev/kvm").st_mode & 0o006 == 0o006


def _prepare_kvm() -> str:
    """kvm when /dev/kvm is usable by QEMU's user; without that every define takes ~40 s."""
    if not os.path.exists("/dev/kvm"):
        return "qemu"
    if not _kvm_usable():
        if os.geteuid() != 0:
            raise BenchError("/dev/kvm is not usable by QEMU's user: chmod 0666 /dev/kvm")
        os.chmod("/dev/kvm", 0o666)
    return "kvm"


# --- results: JSON, Markdown, plot ------------------------------------------------------------

def merge(previous: Json, new_sections: Json, machine_info: Json) -> Json:
    sections = dict(previous.get("sections", {}))
    sections.update(new_sections)
    return {"machine": machine_info, "sections": {k: sections[k] for k in SECTIONS
                                                  if k in sections}}


def _f(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def _med(measured: Json) -> str:
    return f"{_f(measured['median'])} s ({_f(measured['min'])})"


def _mib(kib_values: Sequence[int]) -> str:
    return f"{max(kib_values) / 1024:.0f}"


def targets(results: Json) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    sections = results["sections"]
    noop = sections.get("noop")
    if noop and noop["rows"]:
        top = max(noop["rows"], key=lambda r: r["n"])
        rows.append((f"no-op pass at N = {top['n']}: at most 2x the floor",
                     (f"{top['ratio']:.2f}x ({_f(top['reconcile']['median'])} s vs "
                     f"{_f(top['floor']['median'])} s)"), _met(top["ratio"] <= 2)))
        worst = max(noop["rows"], key=lambda r: r["calls_per_vm"])
        rows.append(("no-op pass: at most 3 libvirt calls per VM (per domain on the host)",
                     f"{worst['calls_per_vm']:.2f} (N = {worst['n']})",
                     _met(worst["calls_per_vm"] <= 3)))
    converge = sections.get("converge")
    if converge and converge["rows"]:
        default = converge["default_workers"]
        for phase in ("cold", "change"):
            at_default = [r for r in converge["rows"]
                          if r["phase"] == phase and r["workers"] == default]
            if at_default:
                worst = max(at_default, key=lambda r: r["ratio"])
                rows.append(((f"{phase} pass at --workers {default} (default): at most 1.25x "
                             f"the floor"), f"{worst['ratio']:.2f}x at worst (N = {worst['n']})",
                             _met(worst["ratio"] <= 1.25)))
        best = best_workers(converge)
        if best is not None:
            rows.append(("--workers default is the best measured on this host",
                         (f"default {default}, fastest cold converge at N = 30: "
                         f"--workers {best}"), _met(best == default, close=True)))
    service = sections.get("service")
    if service:
        rows += _service_targets(service["result"])
    validate = sections.get("validate")
    if validate:
        for row in validate["rows"]:
            if row["n"] == 1000:
                rows.append(("validation of 1,000 manifests under 1 s",
                             f"{_f(row['reconcile']['median'])} s",
                             _met(row["reconcile"]["median"] < 1)))
    return rows


def _service_targets(r: Json) -> list[tuple[str, str, str]]:
    rows = []
    edit = r["edit_to_step"]
    if edit["n"]:
        rows.append(("service: p50 manifest edit → first libvirt step under 300 ms",
                     f"{edit['p50'] * 1000:.0f} ms (p95 {edit['p95'] * 1000:.0f} ms)",
                     _met(edit["p50"] < 0.3)))
    called, gone = r["destroy_to_running"], r.get("destroy_stopped_to_running", {})
    if gone.get("n"):  # judged from the guest's end: libvirt's destroy call alone takes 1-3 s
        rows.append((("service: p50 external destroy → running again under 1 s (from the "
                     "guest's stop event)"),
                     (f"{gone['p50'] * 1000:.0f} ms (p95 {gone['p95'] * 1000:.0f} ms); "
                      f"{called['p50'] * 1000:.0f} ms from the destroy call"),
                     _met(gone["p50"] < 1)))
    rows.append(((f"service: idle CPU under 1 % ({r['idle_managed']} managed VMs, "
                 f"{r['idle_seconds']:.0f} s)"), f"{r['idle_cpu_share'] * 100:.2f} %",
                 _met(r["idle_cpu_share"] < 0.01)))
    if "grown_to" in r:
        peak = r["grown_peak_rss_kib"] * 1024
        rows.append((f"service: RSS under 100 MB at {r['grown_to']:,} VMs",
                     (f"{r['grown_rss_kib'] * 1024 / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB "
                      f"({r['grown_peak_rss_kib'] / 1024:.0f} MiB)"), _met(peak < 100e6)))
    return rows


def _met(ok: bool, close: bool = False) -> str:
    return "yes" if ok else ("see table" if close else "**no**")


def best_workers(converge: Json) -> int | None:
    sweep = [r for r in converge["rows"] if r["phase"] == "cold" and r["n"] == 30]
    if len(sweep) < 2:
        return None
    return int(min(sweep, key=lambda r: r["reconcile"]["median"])["workers"])


def render(results: Json, plot_note: str, out_dir: Path) -> str:
    m = results["machine"]
    sections = results["sections"]
    out = ["# Benchmark results", "",
           ("Written by `benchmarks/bench.py` (`make bench`); every run overwrites this file "
           "(hand-written notes go in `NOTES.md`, shown at the end). How to read the numbers: "
           "`benchmarks/README.md`. Raw numbers: `results.json`."), "",
           "## Machine", "", "| | |", "| --- | --- |",
           f"| CPU | {m['cpu']} |", f"| cores (nproc) | {m['nproc']} |",
           f"| memory | {m['memory_gib']} GiB |", f"| OS, kernel | {m['os']}, {m['kernel']} |",
           f"| libvirt | {m['libvirt']} (libvirt-python {m['libvirt_python']}), {m['uri']} |",
           f"| QEMU | {m['hypervisor']} via libvirt; {m['qemu_binary']} |",
           f"| Python | {m['python']} ({m['python_path']}) |",
           (f"| Python start-up | `python -c pass` {m['python_startup_s'] * 1000:.0f} ms, "
           f"`python -c 'import libvirt'` {m['python_import_libvirt_s'] * 1000:.0f} ms |"),
           f"| guests | tiny: 64 MiB, 1 vCPU, no disk, type {m['virt_type']}, stopTimeout 0 |",
           f"| Python bytecode | {m.get('bytecode', 'not recorded')} |",
           f"| libvirt's destroy of one tiny guest | {_destroy(m)} |",
           ""]
    rows = targets(results)
    if rows:
        out += ["## Targets (issue 5)", "", "| target | measured | met |", "| --- | --- | --- |"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        out.append("")
    if "noop" in sections:
        out += _render_noop(sections["noop"])
    if "converge" in sections:
        out += _render_converge(sections["converge"])
    if "validate" in sections:
        out += _render_validate(sections["validate"])
    if "service" in sections:
        out += _render_service(sections["service"])
    out += ["## Time against N", "", plot_note, ""]
    profiles = {name: p for s in sections.values() for name, p in s.get("profiles", {}).items()}
    if profiles:
        out += ["## Where the time goes (py-spy)", ""]
        for name, report in profiles.items():
            if "skipped" in report:
                out += [f"- {name}: skipped: {report['skipped']}"]
                continue
            shares = ", ".join(f"{c} {s:.0%}" for c, s in sorted(
                report["categories"].items(), key=lambda x: -x[1]) if s >= 0.02)
            top = "; ".join(f"{e['frame']} {e['share']:.0%}" for e in report["top_self"][:5])
            out += [(f"- **{name}** (`{report['command']}`, {report['samples']} samples; "
                    f"full report `profile-{name}.txt`): {shares}. Top self: {top}.")]
        out.append("")
    notes = out_dir / "NOTES.md"
    if notes.exists():
        out += ["## Notes", "", notes.read_text().strip(), ""]
    return "\n".join(out)


def _destroy(m: Json) -> str:
    if "destroy_s" not in m:
        return "not recorded"
    seconds = m["destroy_s"]
    text = f"{seconds * 1000:.0f} ms (median of 3)"
    if seconds > 1:
        text += (": slow. The host's PID 1 reaps QEMU's exited process late (NOTES.md, "
                 "\"Destroy\"); `scripts/libvirtd-up.sh` runs libvirtd under `tini -s`")
    return text


def _section_head(title: str, section: Json) -> list[str]:
    code = section["code"]
    where = code.get("note") or (f"commit {code.get('commit')}" +
                                 (f" + uncommitted {', '.join(code['dirty'])}"
                                  if code.get("dirty") else ""))
    return [f"## {title}", "", (f"Measured {section['when']} on {where} "
            f"(controller from `{code['controller']}`)."), ""]


def _busy(others: Sequence[Json]) -> str:
    if not others:
        return ""
    domains = max(o["domains"] for o in others)
    running = max(o["running"] for o in others)
    load = max(o["loadavg"][0] for o in others)
    return (f"Other domains on the host during the runs: up to {domains} ({running} running); "
            f"1-minute load average up to {load:.2f}.")


def _render_noop(section: Json) -> list[str]:
    out = _section_head("1. No-op pass", section)
    out += [(f"Whole-process wall time of `reconcile --once -m DIR -c URI --lock-dir TMP -o json` "
            f"over N managed stopped domains, median of {section['runs']} runs, next to the floor "
            f"(`floors/noop.py`: open, list, then `XMLDesc(INACTIVE)` + `state()` per domain). "
            f"Calls per domain come from one in-process run (`inprocess.py`), divided by "
            f"every domain on the host (the pass reads each one's definition to find "
            f"orphans, and so does the floor); peak RSS from `wait4`."), "",
            ("| N | floor (min) | reconcile (min) | ratio | libvirt calls per domain (calls / "
             "domains on the host) | "
             "in-process pass | peak RSS reconcile / floor (MiB) |"),
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in section["rows"]:
        out.append(f"| {r['n']} | {_med(r['floor'])} | {_med(r['reconcile'])} "
                   f"| {r['ratio']:.2f}x | {r['calls_per_vm']:.2f} ({r['calls']} / "
                   f"{r.get('domains_listed', r['n'])}) | "
                   f"{_f(r['inprocess_seconds'])} s | {_mib(r['reconcile']['max_rss_kib'])} / "
                   f"{_mib(r['floor']['max_rss_kib'])} |")
    rows = sorted(section["rows"], key=lambda r: r["n"])
    if len(rows) >= 2:
        low, high = rows[0], rows[-1]
        span = high["n"] - low["n"]
        per_floor = (high["floor"]["median"] - low["floor"]["median"]) / span * 1000
        per_ours = (high["reconcile"]["median"] - low["reconcile"]["median"]) / span * 1000
        out += ["", (f"Growth from N = {low['n']} to {high['n']}: the floor adds "
                f"{per_floor:.2f} ms per VM, reconcile {per_ours:.2f} ms per VM; at N = {low['n']} "
                f"the fixed cost is {_f(low['floor']['median'])} s vs "
                f"{_f(low['reconcile']['median'])} s.")]
    top = rows[-1] if rows else None
    if top is not None and top.get("calls_by_method"):
        methods = ", ".join(f"`{m}` {c}" for m, c in top["calls_by_method"].items())
        agree = ("the same as" if top.get("hypervisor_calls") == top["calls"]
                 else f"vs {top.get('hypervisor_calls')} by")
        out += ["", (f"Calls at N = {top['n']}, counted by wrapping libvirt-python's connection "
                     f"and domain methods: {methods} ({top['calls']} in all, {agree} the "
                     f"controller's own `Connection.calls`)."
                     + _slowest(top.get("slowest_call", {})))]
    converged = ", ".join(f"N = {n}: {_f(s)} s" for n, s in section["converge_seconds"].items())
    out += ["", (f"Untimed set-up, defining the domains with `reconcile --once` (only the new ones "
            f"each time): {converged}."), _busy([r["others"] for r in section["rows"]]), ""]
    return out


def _slowest(slowest: dict[str, float]) -> str:
    if not slowest:
        return ""
    method, seconds = max(slowest.items(), key=lambda item: item[1])
    return f" The slowest single call of that run: `{method}`, {seconds * 1000:.1f} ms."


def _render_converge(section: Json) -> list[str]:
    out = _section_head("2. Cold converge and change pass", section)
    out += [(f"Whole-process wall time of `reconcile --once --workers W` creating N running tiny "
            f"guests from nothing (cold), then after every manifest's memory went 64 → 96 MiB "
            f"(change: destroy, define, start each one), median of {section['runs']} runs, "
            f"next to `floors/converge.py` with a thread pool of W over as many connections "
            f"as reconcile may open (one per 4 workers; cold: `defineXML` + "
            f"`create`; change: `destroy` + `defineXML` + `create`). The --workers default is "
            f"{section['default_workers']}."), "",
            "| pass | N | workers | floor | reconcile | ratio | floor runs | reconcile runs |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in sorted(section["rows"], key=lambda r: (r["phase"] != "cold", r["n"], r["workers"])):
        out.append(f"| {r['phase']} | {r['n']} | {r['workers']} | {_f(r['floor']['median'])} s "
                   f"| {_f(r['reconcile']['median'])} s | {r['ratio']:.2f}x | "
                   f"{', '.join(_f(t) for t in r['floor']['times'])} | "
                   f"{', '.join(_f(t) for t in r['reconcile']['times'])} |")
    best = best_workers(section)
    if best is not None:
        out += ["", f"Fastest cold converge of 30 guests: `--workers {best}`."]
    if section.get("note"):
        out += ["", section["note"]]
    out += ["", _busy(section["others"]), ""]
    return out


def _render_validate(section: Json) -> list[str]:
    out = _section_head("3. Validation", section)
    out += [(f"Whole-process wall time of `reconcile validate -m DIR` (one manifest per file), "
            f"median of {section['runs']} runs. The reference (`floors/parse.py`) only reads "
            f"and YAML-parses the same files with the C loader: it is not a target, it shows "
            f"what the schema and checks add."), "",
            ("| manifests | reconcile validate (min) | per manifest | "
             "parse-only reference (min) | peak RSS (MiB) |"),
            "| ---: | ---: | ---: | ---: | ---: |"]
    for r in section["rows"]:
        out.append(f"| {r['n']} | {_med(r['reconcile'])} | "
                   f"{r['reconcile']['median'] / r['n'] * 1000:.2f} ms | "
                   f"{_med(r['parse'])} | {_mib(r['reconcile']['max_rss_kib'])} |")
    out.append("")
    return out


def _render_service(section: Json) -> list[str]:
    r = section["result"]
    out = _section_head("4. The service", section)
    out += [(f"`benchmarks/service_latency.py {' '.join(section['args'])}` on a private "
             f"libvirtd (its own mount namespace, as the service tests use): the service "
             f"(`reconcile -m DIR -c URI --resync 3600 -v`) manages {r['running']} running "
             f"tiny {r['virt_type']} guests and {r['stopped']} defined, stopped ones; "
             f"{r['rounds']} trials of each latency, p50 and p95 by nearest rank. A trial "
             f"edits a running guest's memory (64 ↔ 96 MiB: a restart) or destroys it from "
             f"outside; the step times are when the service's log line arrived."), "",
            "| measure | p50 | p95 | min | max |", "| --- | ---: | ---: | ---: | ---: |"]
    labels = (("edit_to_step", "manifest edit → first libvirt step logged"),
              ("edit_to_converged", "manifest edit → running with the new memory"),
              ("destroy_to_step", "external destroy called → start step logged"),
              ("destroy_to_running", "external destroy called → running again"),
              ("destroy_returned_to_running", "external destroy returned → running again"),
              ("destroy_stopped_to_running", "domain stopped (lifecycle event) → running again"))
    for key, label in labels:
        stat = r.get(key, {})
        if stat.get("n"):
            out.append(f"| {label} | {stat['p50'] * 1000:.0f} ms | {stat['p95'] * 1000:.0f} ms "
                       f"| {stat['min'] * 1000:.0f} ms | {stat['max'] * 1000:.0f} ms |")
    out += ["", "| while idle | |", "| --- | --- |",
            f"| start → READY=1 (first pass) | {r['ready_s'] * 1000:.0f} ms |",
            (f"| CPU over {r['idle_seconds']:.0f} s, {r['idle_managed']} managed VMs | "
             f"{r['idle_cpu_share'] * 100:.2f} % of one CPU |"),
            (f"| RSS (peak), {r['idle_managed']} managed VMs | "
             f"{r['idle_rss_kib'] / 1024:.1f} MiB ({r['idle_peak_rss_kib'] / 1024:.1f} MiB), "
             f"{r['threads']} threads |")]
    if "grown_to" in r:
        out.append(f"| RSS (peak) after a full resync (SIGHUP) of {r['grown_to']:,} managed VMs "
                   f"| {r['grown_rss_kib'] / 1024:.1f} MiB ({r['grown_peak_rss_kib'] / 1024:.1f} "
                   f"MiB) |")
    out += ["", _busy(section["others"]), ""]
    return out


def _plain_ticks(ax: Any) -> None:
    """Tick labels as plain numbers (0.2, 1000), not 2x10^-1, on log axes too."""
    from matplotlib.ticker import FuncFormatter

    def minor(value: float, _pos: int) -> str:
        return f"{value:g}" if f"{value:e}"[0] in "25" else ""

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        axis.set_minor_formatter(FuncFormatter(minor))


def plot(results: Json, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return ("No plot: matplotlib is not installed for this interpreter "
                "(`pip install matplotlib`; `make bench` installs it when PyPI answers).")
    sections = results["sections"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (noop_ax, conv_ax), (sweep_ax, val_ax) = axes
    noop = sections.get("noop")
    if noop:
        rows = sorted(noop["rows"], key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        noop_ax.plot(ns, [r["floor"]["median"] for r in rows], "o-", label="floor")
        noop_ax.plot(ns, [r["reconcile"]["median"] for r in rows], "s-",
                     label="reconcile --once")
        noop_ax.plot(ns, [2 * r["floor"]["median"] for r in rows], ":", color="grey",
                     label="target: 2x floor")
        noop_ax.set(xscale="log", yscale="log", xlabel="managed domains N",
                    ylabel="seconds (median)", title="No-op pass")
        noop_ax.legend()
    converge = sections.get("converge")
    if converge:
        default = converge["default_workers"]
        others: set[str] = set()
        for phase, marker in (("cold", "o"), ("change", "s")):
            by_n: dict[int, Json] = {}  # at the default, else (measured before a change of
            for r in converge["rows"]:  # the default) at the workers it was measured with
                if r["phase"] == phase and (r["workers"] == default or r["n"] not in by_n):
                    by_n[r["n"]] = r
            rows = [by_n[n] for n in sorted(by_n)]
            others |= {f"N = {r['n']} at {r['workers']}" for r in rows
                       if r["workers"] != default}
            if rows:
                ns = [r["n"] for r in rows]
                conv_ax.plot(ns, [r["floor"]["median"] for r in rows], marker + "--",
                             label=f"{phase}: floor")
                conv_ax.plot(ns, [r["reconcile"]["median"] for r in rows], marker + "-",
                             label=f"{phase}: reconcile")
        conv_ax.set(xlabel="running guests N", ylabel="seconds (median)",
                    title=f"Converge at --workers {default}"
                    + (f" ({', '.join(sorted(others))})" if others else ""))
        conv_ax.legend()
        for phase, marker in (("cold", "o"), ("change", "s")):
            rows = sorted((r for r in converge["rows"] if r["phase"] == phase and r["n"] == 30),
                          key=lambda r: r["workers"])
            if rows:
                ws = [r["workers"] for r in rows]
                sweep_ax.plot(ws, [r["floor"]["median"] for r in rows], marker + "--",
                              label=f"{phase}: floor")
                sweep_ax.plot(ws, [r["reconcile"]["median"] for r in rows], marker + "-",
                              label=f"{phase}: reconcile")
        sweep_ax.set(xscale="log", xlabel="--workers (thread pool size)",
                     ylabel="seconds (median)", title="30 guests: parallelism")
        sweep_ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        if sweep_ax.lines:
            sweep_ax.legend(loc="best")
    validate = sections.get("validate")
    if validate:
        rows = sorted(validate["rows"], key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        val_ax.plot(ns, [r["reconcile"]["median"] for r in rows], "s-",
                    label="reconcile validate")
        val_ax.plot(ns, [r["parse"]["median"] for r in rows], "o--", label="parse only")
        val_ax.axhline(1.0, color="grey", linestyle=":", label="target at 1,000: 1 s")
        val_ax.set(xscale="log", yscale="log", xlabel="manifests", ylabel="seconds (median)",
                   title="Validation")
        val_ax.legend()
    for ax in axes.flat:
        _plain_ticks(ax)
    sweep_ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    fig.suptitle(f"reconcile vs floor — {results['machine']['cpu']}, "
                 f"{results['machine']['nproc']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"![time against N]({path.name})"


# --- main ----------------------------------------------------------------------------------------

def _plan(args: argparse.Namespace, default_workers: int) -> Plan:
    if args.quick:
        return Plan(noop_sizes=[10, 100], noop_runs=3,
                    converge=[(10, default_workers, True)], converge_runs=1,
                    validate_sizes=[1000], validate_runs=3, profile=False,
                    service_args=["--vms", "2", "--stopped", "8", "--rounds", "3", "--idle",
                                  "5", "--rss-at", "30"])
    change_at = {default_workers, 5, 8}
    sweep = sorted({1, 2, 4, 5, 8, default_workers})
    return Plan(noop_sizes=[10, 100, 1000], noop_runs=5,
                converge=[(10, default_workers, True)]
                + [(30, w, w in change_at) for w in sweep],
                converge_runs=3, validate_sizes=[1000, 10000], validate_runs=5,
                profile=not args.no_profile,
                service_args=["--vms", "4", "--stopped", "96", "--rounds", "20", "--idle",
                              "60", "--rss-at", "1000"])


@contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGTERM ends the benchmark like Ctrl-C does, so the cleanup in `finally` runs."""
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _render_again(out: Path) -> int:
    results_path = out / "results.json"
    if not results_path.exists():
        print(f"no {results_path} to render", file=sys.stderr)
        return 1
    results: Json = json.loads(results_path.read_text())
    (out / "RESULTS.md").write_text(render(results, plot(results, out / "time_vs_n.png"),
                                           out) + "\n")
    print(f"written: {out / 'RESULTS.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in about a minute; results go to results/quick/")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run (default: all): "
                             + ", ".join(SECTIONS))
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("-c", "--connect", default="qemu:///system", help="libvirt URI")
    parser.add_argument("--code-note", default=None,
                        help="how to describe the measured code in the results (default: "
                             "its git commit and uncommitted files)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default: benchmarks/results, with --quick "
                             "benchmarks/results/quick)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write RESULTS.md and the plot again from "
                             "results.json (after editing NOTES.md)")
    args = parser.parse_args(argv)
    if args.render:
        return _render_again(args.out or (RESULTS / "quick" if args.quick else RESULTS))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown or not only:
        parser.error(f"--only takes {', '.join(SECTIONS)}; got {args.only!r}")
    if not RECONCILE.exists():
        parser.error(f"no reconcile command next to {PY}: run this with the Python of the "
                     f"installation to measure, e.g. .venv/bin/python (make bench)")

    default_workers = _default_workers()
    plan = _plan(args, default_workers)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-{secrets.token_hex(4)}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    bytecode = _cache_bytecode(tmp / "pycache")
    host: Host | None = None
    new_sections: Json = {}
    try:
        with _interrupts_raise():
            virt_type = _prepare_kvm()
            host = Host(args.connect, prefix)
            bench = Bench(args.connect, host, tmp, virt_type, default_workers, out,
                          plan.profile)
            print(f"benchmark: {', '.join(only)}{' (quick)' if args.quick else ''}; "
                  f"domains {prefix}*; reconcile {RECONCILE}")
            machine_info = machine(host)
            machine_info["bytecode"] = bytecode
            machine_info["destroy_s"] = host.destroy_seconds(virt_type)
            code = code_state(args.code_note)
            for section in only:
                print(f"{section}:")
                bench.profiles = {}
                started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                if section == "noop":
                    data = bench_noop(bench, plan.noop_sizes, plan.noop_runs)
                elif section == "converge":
                    data = bench_converge(bench, plan.converge, plan.converge_runs)
                elif section == "service":
                    data = bench_service(bench, plan.service_args)
                else:
                    data = bench_validate(bench, plan.validate_sizes, plan.validate_runs)
                data.update(when=started, code=code, profiles=bench.profiles)
                new_sections[section] = data
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        _stop_children()
        if host is not None:
            removed = host.remove()
            print(f"cleanup: removed {removed} leftover domain(s) named {prefix}*"
                  if removed else f"cleanup: no domain named {prefix}* is left")
            host.close()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    results_path = out / "results.json"
    previous: Json = json.loads(results_path.read_text()) if results_path.exists() else {}
    results = merge(previous, new_sections, machine_info)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    plot_note = plot(results, out / "time_vs_n.png")
    report = render(results, plot_note, out)
    (out / "RESULTS.md").write_text(report + "\n")
    print()
    print(report)
    print(f"\nwritten: {out / 'RESULTS.md'}, {results_path.name}"
          + (", time_vs_n.png" if plot_note.startswith("!") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
