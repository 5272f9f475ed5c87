"""The performance benchmark of issue 5: `reconcile` measured side by side with its floor.

    python benchmarks/bench.py [--quick] [--only noop,converge,validate,service]
                               [--no-profile] [--out DIR] [--code-note TEXT] [--render]

Run it with the interpreter of the installation to measure (`make bench` uses .venv's):
the `reconcile` command is the one next to that interpreter, and every floor script runs
with the same interpreter, so both pay the same start-up. Needs root and a libvirtd on
qemu:///system (`make bench` starts one).

Sections (one module each in benchmarks/sections/; benchmarks/README.md says what the
numbers mean):

  noop      a no-op `reconcile --once` over N managed stopped tiny domains, N = 10, 100,
            1000, 10000, vs benchmarks/floors/noop.py: wall and CPU time, the ratios of
            alternating pairs; in-process libvirt call count; peak RSS
  converge  a cold converge of N running tiny guests (N = 10, and 30 at --workers 1, 2, 4,
            5, 8) and a change pass restarting all of them, vs benchmarks/floors/converge.py
  validate  `reconcile validate` of 1,000 and 10,000 manifests, next to a parse-only
            reference (benchmarks/floors/parse.py)
  service   the service's latencies, idle CPU and RSS on a private libvirtd
            (benchmarks/service_latency.py)

Writes benchmarks/results/RESULTS.md, results.json (raw numbers) and time_vs_n.png
(when matplotlib imports); --quick writes to benchmarks/results/quick/ instead. With
--only, the sections not run are kept from the previous results.json. Every domain it
creates is named bench-<8 hex>-..., and all of them are removed at the end, on Ctrl-C,
SIGTERM and on errors; no other domain is ever changed.

This file is the command only: the plan of each mode, the order of the sections and
what is written; the machinery is in benchmarks/harness/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.context import Bench
from harness.host import Host, clean_up, interrupts_raise, new_prefix, prepare_kvm
from harness.machine import code_state, default_workers, machine
from harness.plot import plot
from harness.report import render
from harness.runs import PY, RECONCILE, RESULTS, BenchError, Json, cache_bytecode
from sections import SECTIONS, converge, noop, service, validate


@dataclass(frozen=True)
class Plan:
    """How much each section measures: the full run, or --quick's smoke run."""

    noop_sizes: list[int]
    noop_runs: int
    converge: list[tuple[int, int, bool]]  # (N, workers, with a change pass)
    converge_runs: int
    validate_sizes: list[int]
    validate_runs: int
    profile: bool
    service_args: list[str]


def _plan(args: argparse.Namespace, default_workers: int) -> Plan:
    if args.quick:
        return Plan(noop_sizes=args.noop_sizes or [10, 100], noop_runs=3,
                    converge=[(10, default_workers, True)], converge_runs=1,
                    validate_sizes=[1000], validate_runs=3, profile=False,
                    service_args=["--vms", "2", "--stopped", "8", "--rounds", "3", "--idle",
                                  "5", "--rss-at", "30"])
    change_at = {default_workers, 5, 8}
    sweep = sorted({1, 2, 4, 5, 8, default_workers})
    return Plan(noop_sizes=args.noop_sizes or [10, 100, 1000, 10000], noop_runs=5,
                converge=[(10, default_workers, True)]
                + [(30, w, w in change_at) for w in sweep],
                converge_runs=3, validate_sizes=[1000, 10000], validate_runs=5,
                profile=not args.no_profile,
                service_args=["--vms", "4", "--stopped", "96", "--rounds", "20", "--idle",
                              "60", "--rss-at", "1000", "--resyncs", "5"])


def _measure(section: str, bench: Bench, plan: Plan) -> Json:
    if section == "noop":
        return noop.measure(bench, sizes=plan.noop_sizes, runs=plan.noop_runs)
    if section == "converge":
        return converge.measure(bench, configs=plan.converge, runs=plan.converge_runs)
    if section == "service":
        return service.measure(bench, service_args=plan.service_args)
    return validate.measure(bench, sizes=plan.validate_sizes, runs=plan.validate_runs)


def merge(previous: Json, new_sections: Json, machine_info: Json) -> Json:
    """This run's sections over the previous results.json's, in the sections' order."""
    sections = dict(previous.get("sections", {}))
    sections.update(new_sections)
    return {"machine": machine_info, "sections": {k: sections[k] for k in SECTIONS
                                                  if k in sections}}


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
    parser.add_argument("--noop-sizes", type=lambda text: [int(n) for n in text.split(",")],
                        default=None, metavar="N,N,...",
                        help="the no-op section's N (default 10,100,1000,10000; --quick 10,100)")
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

    workers = default_workers()
    plan = _plan(args, workers)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    prefix = new_prefix()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    bytecode = cache_bytecode(tmp / "pycache")
    host: Host | None = None
    new_sections: Json = {}
    try:
        with interrupts_raise():
            virt_type = prepare_kvm()
            host = Host(args.connect, prefix)
            bench = Bench(args.connect, host, tmp, virt_type, workers, out, plan.profile)
            print(f"benchmark: {', '.join(only)}{' (quick)' if args.quick else ''}; "
                  f"domains {prefix}*; reconcile {RECONCILE}")
            machine_info = machine(host)
            machine_info["bytecode"] = bytecode
            machine_info["destroy_s"] = host.destroy_seconds(virt_type)
            code = code_state(args.code_note)
            for section in only:
                print(f"{section}:")
                fresh = replace(bench, profiles={})
                started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                data = _measure(section, fresh, plan)
                data.update(when=started, code=code, profiles=fresh.profiles)
                new_sections[section] = data
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("benchmark interrupted", file=sys.stderr)
        return 130
    finally:
        clean_up(host=host, prefix=prefix, tmp=tmp)

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
