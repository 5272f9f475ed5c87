"""Two installations of `reconcile` measured side by side, in one sitting (issue 12).

Run by hand (not by `make bench`): it times the same commands as `make bench`'s `noop`
and `converge` (cold) sections, for an older checkout's venv ("before") and this one's
("after"), alternating runs so that slow periods of a shared host hit both:

    .venv/bin/python benchmarks/before_after.py --before /work/baseline/.venv \\
        --after .venv --out benchmarks/results/issue12-before-after.json

- no-op: N stopped managed tiny domains, defined once by the *after* code; both codes must
  report every VM `unchanged` on that one set (else it stops). Instructions of the whole
  process under `valgrind --tool=cachegrind --cache-sim=no` (independent of the host's
  load), then pairs of wall and CPU (user + sys, `wait4`) time.
- converge, cold: N running tiny guests from nothing, `--workers 8` (both codes' default),
  every run's domains removed after it.

Every domain is named `bench-<8 hex>-...` and removed at the end, on Ctrl-C, on SIGTERM
and on any error (`harness.host.clean_up`); other domains are never touched. Root only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.context import write_manifests  # noqa: E402
from harness.host import Host, clean_up, interrupts_raise, new_prefix, prepare_kvm  # noqa: E402
from harness.runs import BenchError, Run, run_timed  # noqa: E402

Json = dict[str, Any]


class Code:
    """One installation: its `reconcile` and a bytecode cache of its own."""

    def __init__(self, label: str, venv: Path, tmp: Path):
        self.label = label
        self.reconcile = venv.resolve() / "bin" / "reconcile"
        if not self.reconcile.exists():
            raise BenchError(f"{self.reconcile}: no such file")
        self.pycache = tmp / f"pyc-{label}"
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPYCACHEPREFIX"] = str(self.pycache)

    def once(self, uri: str, manifests: Path, locks: Path, *extra: str) -> list[str]:
        return [str(self.reconcile), "--once", "-m", str(manifests), "-c", uri,
                "--lock-dir", str(locks), "-o", "json", *extra]

    def run(self, argv: list[str]) -> Run:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            return run_timed(argv, timeout=3600)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def results_of(run: Run, what: str) -> Counter[str]:
    try:
        vms = json.loads(run.stdout).get("vms", [])
    except ValueError:
        raise BenchError(f"{what}: exit {run.returncode}, no JSON; {run.stderr[-800:]}") from None
    return Counter(vm["result"] for vm in vms)


def check(run: Run, what: str, *, n: int, want: str) -> None:
    got = results_of(run, what)
    if run.returncode != 0 or got != Counter({want: n}):
        raise BenchError(f"{what}: exit {run.returncode}, results {dict(got)} (want {n} {want});"
                         f" stderr: {run.stderr[-800:]}")


def load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


def instructions(code: Code, argv: list[str], n: int) -> int:
    run = code.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                    "--cachegrind-out-file=/dev/null", *argv])
    check(run, f"{code.label}: no-op under valgrind", n=n, want="unchanged")
    match = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
    if not match:
        raise BenchError(f"{code.label}: no 'I refs' in valgrind's output: {run.stderr[-800:]}")
    return int(match.group(1).replace(",", ""))


def warm_up(codes: list[Code], tmp: Path) -> None:
    """Fill each code's bytecode cache before anything is timed: a pass over no manifests
    on libvirt's test driver (nothing of the real host is read or touched)."""
    empty, locks = tmp / "empty", tmp / "locks-empty"
    empty.mkdir()
    for code in codes:
        run = code.run(code.once("test:///default", empty, locks))
        if run.returncode != 0:
            raise BenchError(f"{code.label}: warm-up exit {run.returncode}: {run.stderr[-800:]}")


def noop(codes: list[Code], *, uri: str, tmp: Path, prefix: str, virt_type: str, n: int,
         pairs: int, valgrind_runs: int) -> Json:
    manifests, locks = tmp / "noop", tmp / "locks-noop"
    names = [f"{prefix}n{i:05d}" for i in range(n)]
    write_manifests(manifests, names, state="stopped", memory_mib=64, virt_type=virt_type)
    after = codes[-1]
    first = after.run(after.once(uri, manifests, locks))
    check(first, "define the no-op set (after code)", n=n, want="converged")
    print(f"no-op: {n} domains defined in {first.seconds:.1f} s", flush=True)
    for code in codes:  # fills each bytecode cache, and checks both see the set unchanged
        for attempt in range(2):
            warm = code.run(code.once(uri, manifests, locks))
            check(warm, f"{code.label}: no-op warm-up {attempt}", n=n, want="unchanged")
    out: Json = {"n": n, "instructions": {c.label: [] for c in codes},
                 "wall": {c.label: [] for c in codes}, "cpu": {c.label: [] for c in codes},
                 "load": []}
    for i in range(valgrind_runs):
        for code in codes if i % 2 == 0 else codes[::-1]:
            count = instructions(code, code.once(uri, manifests, locks), n)
            out["instructions"][code.label].append(count)
            print(f"no-op {code.label}: {count:,} instructions (load {load()})", flush=True)
    for i in range(pairs):
        out["load"].append(load())
        for code in codes if i % 2 == 0 else codes[::-1]:
            run = code.run(code.once(uri, manifests, locks))
            check(run, f"{code.label}: no-op pair {i}", n=n, want="unchanged")
            out["wall"][code.label].append(run.seconds)
            out["cpu"][code.label].append(run.cpu_seconds)
            print(f"no-op {code.label}: wall {run.seconds:.2f} s, cpu {run.cpu_seconds:.2f} s"
                  f" (load {load()})", flush=True)
    out["load"].append(load())
    return out


def converge(codes: list[Code], *, host: Host, uri: str, tmp: Path, prefix: str,
             virt_type: str, n: int, pairs: int, workers: int) -> Json:
    out: Json = {"n": n, "workers": workers, "wall": {c.label: [] for c in codes},
                 "cpu": {c.label: [] for c in codes}, "load": []}
    for i in range(pairs):
        out["load"].append(load())
        for code in codes if i % 2 == 0 else codes[::-1]:
            tag = f"c{code.label[0]}{i}"
            names = [f"{prefix}{tag}-{j:02d}" for j in range(n)]
            manifests, locks = tmp / tag, tmp / f"locks-{tag}"
            write_manifests(manifests, names, state="running", memory_mib=64,
                            virt_type=virt_type)
            try:
                run = code.run(code.once(uri, manifests, locks, "--workers", str(workers)))
                check(run, f"{code.label}: converge {i}", n=n, want="converged")
                if host.active(names) != n:
                    raise BenchError(f"{code.label}: converge {i}: not all {n} running")
            finally:
                host.remove(names)
            out["wall"][code.label].append(run.seconds)
            out["cpu"][code.label].append(run.cpu_seconds)
            out.setdefault("reports", []).append({"code": code.label, "pair": i,
                                                  "report": json.loads(run.stdout)})
            print(f"converge {code.label}: wall {run.seconds:.2f} s, cpu {run.cpu_seconds:.2f} s"
                  f" (load {load()})", flush=True)
    out["load"].append(load())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the older code's venv")
    parser.add_argument("--after", type=Path, required=True, help="the newer code's venv")
    parser.add_argument("-c", "--connect", default="qemu:///system")
    parser.add_argument("--noop-n", type=int, default=1000)
    parser.add_argument("--noop-pairs", type=int, default=5)
    parser.add_argument("--valgrind-runs", type=int, default=1,
                        help="valgrind runs per code (alternating)")
    parser.add_argument("--converge-n", type=int, default=10)
    parser.add_argument("--converge-pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated: noop,converge")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    prefix = new_prefix()
    tmp = Path(tempfile.mkdtemp(prefix="before-after-"))
    host: Host | None = None
    skip = set(filter(None, args.skip.split(",")))
    results: Json = {"prefix": prefix, "started": dt.datetime.now(dt.UTC).isoformat(),
                     "nproc": os.cpu_count()}
    try:
        with interrupts_raise():
            codes = [Code("before", args.before, tmp), Code("after", args.after, tmp)]
            results["codes"] = {c.label: str(c.reconcile) for c in codes}
            warm_up(codes, tmp)
            virt_type = prepare_kvm()
            results["virt_type"] = virt_type
            host = Host(args.connect, prefix)
            results["others"] = host.others()
            print(f"domains {prefix}*; {virt_type}; others {results['others']}", flush=True)
            if "noop" not in skip:
                results["noop"] = noop(codes, uri=args.connect, tmp=tmp, prefix=prefix,
                                       virt_type=virt_type, n=args.noop_n,
                                       pairs=args.noop_pairs, valgrind_runs=args.valgrind_runs)
                started = time.perf_counter()
                removed = host.remove()
                print(f"no-op set removed ({removed}) in {time.perf_counter() - started:.0f} s",
                      flush=True)
            if "converge" not in skip:
                results["converge"] = converge(codes, host=host, uri=args.connect, tmp=tmp,
                                               prefix=prefix, virt_type=virt_type,
                                               n=args.converge_n, pairs=args.converge_pairs,
                                               workers=args.workers)
            results["finished"] = dt.datetime.now(dt.UTC).isoformat()
            args.out.write_text(json.dumps(results, indent=1) + "\n")
            print(f"wrote {args.out}")
    except (BenchError, KeyboardInterrupt) as exc:
        args.out.with_suffix(".partial.json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"before_after: {exc}", file=sys.stderr)
        return 1
    finally:
        clean_up(host=host, prefix=prefix, tmp=tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
