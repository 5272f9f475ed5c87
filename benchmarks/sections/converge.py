"""Section `converge`: a cold converge and a change pass, next to their floor.

For each (N, --workers W) of the plan: `reconcile --once --workers W` creating N running
tiny guests from nothing (cold), then, where the plan says so, after every manifest's
memory went 64 → 96 MiB (change: each guest destroyed, redefined and started), against
`floors/converge.py cold|change` with a pool of W threads over as many connections as
reconcile may open (`controller.virt.connections_for`). Reconcile and floor alternate
which goes first; every run is checked (all `converged`, every guest running at the new
memory, read back from libvirt) and its guests are removed before the next. Run by
`bench.py` (`--only converge`): N = 10 at the default W, and 30 over a sweep of W.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence

from controller.virt import connections_for
from harness.context import Bench, ms, write_manifests
from harness.runs import (
    FLOORS,
    PY,
    BenchError,
    Json,
    Run,
    check_floor,
    check_once,
    run_timed,
    summary,
)


def measure(b: Bench, *, configs: Sequence[tuple[int, int, bool]], runs: int) -> Json:
    """The section's results; `configs` holds (N, workers, with a change pass)."""
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
                       f"{ms(statistics.median(r.seconds for r in floor))}, reconcile "
                       f"{ms(statistics.median(r.seconds for r in ours))}")
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

