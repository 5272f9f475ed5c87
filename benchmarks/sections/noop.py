"""Section `noop`: what a no-op `reconcile --once` costs, next to its floor.

For N = 10, 100, 1,000, 10,000 (quick: 10, 100; `--noop-sizes`) managed **stopped** tiny
domains, already converged: the whole-process wall and CPU time of `reconcile --once -o
json`, median of the runs, in alternating triples with `floors/noop.py` (open, list,
`XMLDesc(INACTIVE)` + `state()` per domain): the default command, which replays the
no-op proof recorded by the untimed warm-up pass (controller/proof.py: every input read
afresh and compared, no planning), and the same with `--no-proof` (the normal pass);
the ratios of the alternating pairs (min, median, max) for both; how many of the
default runs replayed (a replay leaves the proof file as it was, a normal pass writes
it again); peak RSS; the libvirt calls per domain from one in-process run of the normal
pass (`inprocess.py`); a py-spy profile of the normal pass at N = 1,000. Each N adds only
the new domains, defined by an untimed `reconcile --once`; all of them are removed at
the end. Proofs go to a scratch --state-dir. Run by `bench.py` (`--only noop`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from harness.context import Bench, ms, write_manifests
from harness.profiles import profile
from harness.runs import (
    BENCHMARKS,
    FLOORS,
    PY,
    BenchError,
    Json,
    check_floor,
    check_once,
    paired,
    run_timed,
    summary,
    tail,
)


def measure(b: Bench, *, sizes: Sequence[int], runs: int) -> Json:
    """The section's results: a row per N, the untimed set-up times, the runs per N."""
    manifests, locks, state = b.tmp / "noop", b.tmp / "locks-noop", b.tmp / "state-noop"

    def once(*extra: str) -> list[str]:
        return b.once(manifests, locks, "--state-dir", str(state), *extra)

    rows: list[Json] = []
    converge_seconds: dict[str, float] = {}
    names: list[str] = []
    for n in sizes:
        new = [f"{b.prefix}n{i:05d}" for i in range(len(names), n)]
        names += new
        write_manifests(manifests, new, state="stopped", memory_mib=64, virt_type=b.virt_type)
        first = run_timed(once())
        check_once(first, f"no-op N={n}: converging", n=n, allowed={"converged", "unchanged"})
        converge_seconds[str(n)] = first.seconds
        check_once(run_timed(once()), f"no-op N={n}: warm-up (records the proof)", n=n,
                   allowed={"unchanged"})
        others = b.host.others()
        floor_runs, reconcile_runs, normal_runs = [], [], []
        replays = 0
        for _ in range(runs):
            floor = run_timed([PY, FLOORS / "noop.py", b.uri])
            check_floor(floor, f"no-op floor N={n}", at_least=n)
            floor_runs.append(floor)
            before = _proof_stamp(state)
            run = run_timed(once())
            check_once(run, f"no-op N={n}", n=n, allowed={"unchanged"})
            replays += before is not None and _proof_stamp(state) == before
            reconcile_runs.append(run)
            normal = run_timed(once("--no-proof"))
            check_once(normal, f"no-op N={n} --no-proof", n=n, allowed={"unchanged"})
            normal_runs.append(normal)
        listed = n + b.host.others()["domains"]  # the pass reads every domain on the host
        counted = _inprocess(once()[1:], f"no-op N={n}")
        row: Json = {"n": n, "floor": summary(floor_runs),
                     "reconcile": summary(reconcile_runs), "replays": replays,
                     "no_proof": summary(normal_runs), "calls": counted["libvirt_calls"],
                     "domains_listed": listed,
                     "calls_per_vm": counted["libvirt_calls"] / listed,
                     "hypervisor_calls": counted["hypervisor_calls"],
                     "calls_by_method": counted["by_method"],
                     "slowest_call": counted.get("slowest_call", {}),
                     "inprocess_seconds": counted["seconds"], "others": others}
        row["ratio"] = row["reconcile"]["median"] / row["floor"]["median"]
        row["cpu_ratio"] = row["reconcile"]["cpu"]["median"] / row["floor"]["cpu"]["median"]
        row["pairs"] = paired(reconcile_runs, floor_runs)
        row["no_proof_ratio"] = row["no_proof"]["median"] / row["floor"]["median"]
        row["no_proof_cpu_ratio"] = (row["no_proof"]["cpu"]["median"]
                                     / row["floor"]["cpu"]["median"])
        row["no_proof_pairs"] = paired(normal_runs, floor_runs)
        row["loadavg_after"] = list(os.getloadavg())
        rows.append(row)
        pairs, normal_pairs = row["pairs"]["wall"], row["no_proof_pairs"]["wall"]
        b.progress(f"  no-op N={n}: floor {ms(row['floor']['median'])}, reconcile "
                   f"{ms(row['reconcile']['median'])} ({row['ratio']:.2f}x; pairs "
                   f"{pairs['min']:.2f}-{pairs['max']:.2f}x; {replays}/{runs} replayed), "
                   f"--no-proof {ms(row['no_proof']['median'])} "
                   f"({row['no_proof_ratio']:.2f}x; pairs {normal_pairs['min']:.2f}-"
                   f"{normal_pairs['max']:.2f}x); CPU floor {ms(row['floor']['cpu']['median'])}"
                   f", reconcile {ms(row['reconcile']['cpu']['median'])} "
                   f"({row['cpu_ratio']:.2f}x), --no-proof "
                   f"{ms(row['no_proof']['cpu']['median'])} "
                   f"({row['no_proof_cpu_ratio']:.2f}x); {row['calls_per_vm']:.2f} calls per "
                   f"domain, load {row['loadavg_after'][0]:.2f}")
        if b.profile and n == (1000 if 1000 in sizes else max(sizes)):
            b.profiles[f"noop-{n}"] = profile(
                name=f"noop-{n}", command=once("--no-proof"), out=b.out,
                progress=b.progress)
    b.progress(f"  removing {len(names)} domains")
    b.host.remove(names)
    return {"rows": rows, "converge_seconds": converge_seconds, "runs": runs}


def _proof_stamp(state: Path) -> tuple[tuple[str, int, int], ...] | None:
    """The proof files' names, inodes and mtimes (None: there is none). A replay leaves
    them as they are; a normal pass that records writes its proof again."""
    folder = state / "noop-proofs"
    if not folder.is_dir():
        return None
    found = tuple(sorted((entry.name, entry.stat().st_ino, entry.stat().st_mtime_ns)
                         for entry in folder.iterdir() if entry.suffix == ".json"))
    return found or None


def _inprocess(args: Sequence[str], what: str) -> Json:
    """Run `reconcile ARGS` inside inprocess.py: its libvirt calls, counted."""
    run = run_timed([PY, BENCHMARKS / "inprocess.py", "--", *args])
    try:
        counted: Json = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"{what}: in-process run failed (exit {run.returncode}):\n"
                         f"{tail(run.stderr)}") from None
    if counted["exit"] != 0:
        raise BenchError(f"{what}: in-process run exited {counted['exit']}: {counted}")
    return counted

