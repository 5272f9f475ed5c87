"""Many hosts: does converging 3 hosts x N VMs take no longer than the slowest host alone?

    python benchmarks/multihost.py [--vms 10] [--runs 3] [--state running|stopped]

Builds three real libvirt hosts (tests/multihost/hosts.py: each its own libvirtd in its
own network and mount namespaces, reached over qemu+tcp://), then, for each run:
  1. each host alone: `reconcile --once` over a tree whose N VMs are all on that host,
     from nothing (timed), then the domains are removed;
  2. all three at once: one `reconcile --once` over the 3 x N VMs, from nothing (timed).
The target (issue 7) is all-at-once <= 1.25 x the slowest single host. Results go to
benchmarks/results/multihost.json and MULTIHOST.md. Needs root; the hosts and domains are
removed at the end, even on failure.

All three test hosts share this machine's CPUs: with running guests, three hosts start
3 x N QEMU processes on the same cores that one host alone had to itself, so that variant
measures the machine as much as the controller. `--state stopped` (define only) shows the
controller's own overlap of hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.multihost.hosts import (  # noqa: E402 - after the sys.path line above
    NetnsHost,
    start_hosts,
    stop_hosts,
)
from tests.support.libvirtd import VIRT_TYPE  # noqa: E402 - after the sys.path line above

RECONCILE = Path(sys.executable).parent / "reconcile"
RESULTS = REPO / "benchmarks" / "results"
NAMES = ["kvm-1", "kvm-2", "kvm-3"]


def write_tree(root: Path, hosts: list[NetnsHost], placed: dict[str, str], state: str) -> None:
    root.mkdir(parents=True)
    (root / "hosts.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Hosts\nhosts:\n"
        + "".join(f"  {host.name}: {host.uri}\n" for host in hosts))
    for name, host in placed.items():
        (root / f"{name}.yaml").write_text(
            "apiVersion: reconcile/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: {name}}}\n"
            f"spec: {{memory: 64, vcpus: 1, type: {VIRT_TYPE}, stopTimeout: 0, "
            f"state: {state}, host: {host}}}\n")


def converge(work: Path, tag: str, hosts: list[NetnsHost], placed: dict[str, str],
             state: str, workers: int) -> float:
    tree = work / tag
    write_tree(tree, hosts, placed, state)
    started = time.monotonic()
    done = subprocess.run([str(RECONCILE), "--once", "-m", str(tree), "-o", "json",
                           "--state-dir", str(work / f"{tag}-state"),
                           "--lock-dir", str(work / f"{tag}-locks"), "--workers", str(workers)],
                          capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    report = json.loads(done.stdout) if done.stdout else {}
    results = {vm["name"]: vm["result"] for vm in report.get("vms", [])}
    if done.returncode != 0 or set(results.values()) != {"converged"} or \
            len(results) != len(placed):
        raise SystemExit(f"{tag}: exit {done.returncode}, {results}\n{done.stderr[-2000:]}")
    return seconds


def floor(hosts: list[NetnsHost], placed: dict[str, str], state: str, workers: int) -> float:
    """The same libvirt work with nothing else: per host a pool of `workers` threads doing
    defineXML (+ create), all hosts at once, each on a connection of its own."""
    from concurrent.futures import ThreadPoolExecutor

    import libvirt

    by_host = {host.name: host for host in hosts}
    conns = {name: libvirt.open(by_host[name].uri) for name in set(placed.values())}

    def one(name: str, host: str) -> None:
        dom = conns[host].defineXML(
            f"<domain type='{VIRT_TYPE}'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os><devices><console type='pty'/></devices>"
            "</domain>")
        if state == "running":
            dom.create()

    pools = {host: ThreadPoolExecutor(workers) for host in conns}
    started = time.monotonic()
    futures = [pools[host].submit(one, name, host) for name, host in placed.items()]
    for future in futures:
        future.result()
    seconds = time.monotonic() - started
    for pool in pools.values():
        pool.shutdown()
    for conn in conns.values():
        conn.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=10, help="VMs per host (default 10)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--state", choices=("running", "stopped"), default="running")
    parser.add_argument("--workers", type=int, default=5, help="--workers per host (default 5)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces, libvirtd)")

    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # the start-up probes
    hosts = start_hosts(NAMES)
    prefix = f"bench-{secrets.token_hex(3)}-"
    rows: list[dict[str, object]] = []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="rcl-mh-bench-") as tmp:
                work = Path(tmp)
                alone: dict[str, float] = {}
                floor_alone: dict[str, float] = {}
                for host in hosts:
                    placed = {f"{prefix}{run}-{host.name}-{i}": host.name
                              for i in range(args.vms)}
                    alone[host.name] = converge(work, f"alone-{host.name}", hosts, placed,
                                                args.state, args.workers)
                    host.destroy_all(prefix)
                    floor_alone[host.name] = floor(hosts, placed, args.state, args.workers)
                    host.destroy_all(prefix)
                placed = {f"{prefix}{run}-{host.name}-{i}": host.name
                          for host in hosts for i in range(args.vms)}
                together = converge(work, "together", hosts, placed, args.state, args.workers)
                for host in hosts:
                    host.destroy_all(prefix)
                floor_together = floor(hosts, placed, args.state, args.workers)
                for host in hosts:
                    host.destroy_all(prefix)
            slowest = max(alone.values())
            floor_slowest = max(floor_alone.values())
            row = {"run": run + 1, "alone": alone, "slowest_alone": slowest,
                   "together": together, "ratio": together / slowest,
                   "floor_alone": floor_alone, "floor_slowest_alone": floor_slowest,
                   "floor_together": floor_together,
                   "floor_ratio": floor_together / floor_slowest,
                   "load": os.getloadavg()[0]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        for host in hosts:
            try:
                host.destroy_all(prefix)
            except Exception as exc:  # noqa: BLE001 - the hosts go anyway
                print(f"cleanup of {host.name}: {exc}", file=sys.stderr)
        stop_hosts(hosts)

    def median(key: str) -> float:
        return statistics.median(float(row[key]) for row in rows)  # type: ignore[arg-type]

    median_slowest, median_together = median("slowest_alone"), median("together")
    floor_slowest, floor_together = median("floor_slowest_alone"), median("floor_together")
    result = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "virt_type": VIRT_TYPE},
        "vms_per_host": args.vms, "state": args.state, "workers_per_host": args.workers,
        "runs": rows, "median_slowest_alone": median_slowest,
        "median_together": median_together, "ratio": median_together / median_slowest,
        "floor_median_slowest_alone": floor_slowest, "floor_median_together": floor_together,
        "floor_ratio": floor_together / floor_slowest,
        "together_vs_floor": median_together / floor_together,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"multihost-{args.state}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.state}: 3 hosts x {args.vms} VMs together {median_together:.2f} s, slowest "
          f"host alone {median_slowest:.2f} s: {result['ratio']:.2f}x (target <= 1.25x); the "
          f"floor: {floor_together:.2f} s vs {floor_slowest:.2f} s = "
          f"{result['floor_ratio']:.2f}x; reconcile together vs the floor together: "
          f"{result['together_vs_floor']:.2f}x; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
