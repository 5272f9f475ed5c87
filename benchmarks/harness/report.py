"""RESULTS.md: the machine, the targets met or not, one table per section, the profiles.

`bench.py` calls `render(results, plot_note, out_dir)` after a run (and with `--render`,
from results.json alone) and writes what it returns to RESULTS.md. It reads only the
results' JSON, never the sections' code: a section kept from an earlier run (`--only`)
renders as it was measured. `targets` judges issue 5's targets; `NOTES.md` in the
results folder, hand-written, is included at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.runs import Json


def _f(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def _med(measured: Json) -> str:
    return f"{_f(measured['median'])} s ({_f(measured['min'])})"


def _pairs(row: Json) -> str:
    """'; pairs 1.10-1.35x': the spread of the alternating pairs' wall-time ratios."""
    pairs = row.get("pairs")
    if not pairs:
        return ""
    return f"; pairs {pairs['wall']['min']:.2f}-{pairs['wall']['max']:.2f}x"


def _replays(row: Json) -> str:
    """'; 5/5 replayed': how many default runs replayed the no-op proof."""
    return f"; {row['replays']}/{len(row['reconcile']['times'])} replayed" \
        if "replays" in row else ""


def _normal(row: Json, ratio: str, what: str) -> str:
    """'; --no-proof 2.10x (1.234 s)': the normal pass next to the replay."""
    if ratio not in row:
        return ""
    measured = row["no_proof"]["cpu"] if what == "cpu" else row["no_proof"]
    return f"; `--no-proof` {row[ratio]:.2f}x ({_f(measured['median'])} s)"


def _cpu(measured: Json) -> str:
    cpu = measured.get("cpu")
    return f"{_f(cpu['median'])} s" if cpu else "-"


def _mib(kib_values: Sequence[int]) -> str:
    return f"{max(kib_values) / 1024:.0f}"


def targets(results: Json) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    sections = results["sections"]
    noop = sections.get("noop")
    if noop and noop["rows"]:
        for row in sorted(noop["rows"], key=lambda r: r["n"]):  # issue 18's targets
            bound = {10: 1.5, 1000: 1.2, 10000: 1.2}.get(row["n"])
            if bound is not None:
                rows.append((f"no-op pass at N = {row['n']:,}: at most {bound}x the floor",
                             (f"{row['ratio']:.2f}x ({_f(row['reconcile']['median'])} s vs "
                              f"{_f(row['floor']['median'])} s{_pairs(row)}{_replays(row)})"
                              + _normal(row, "no_proof_ratio", "median")),
                             _met(row["ratio"] <= bound)))
            if row["n"] == 1000 and "cpu_ratio" in row:
                rows.append(("no-op pass at N = 1,000: CPU time at most 2x the floor's",
                             (f"{row['cpu_ratio']:.2f}x ({_f(row['reconcile']['cpu']['median'])}"
                              f" s vs {_f(row['floor']['cpu']['median'])} s)"
                              + _normal(row, "no_proof_cpu_ratio", "cpu")),
                             _met(row["cpu_ratio"] <= 2)))
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


def _resync_rounds(r: Json) -> str:
    ratios = r.get("grown_resyncs", {}).get("ratios") or []
    if len(ratios) < 2:
        return ""
    return f"; {len(ratios)} resyncs, each over the floor's median of 3: {min(ratios):.2f}-" \
           f"{max(ratios):.2f}x"


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
    if "grown_resync_cpu_s" in r:  # issue 18
        ratio = r["grown_resync_cpu_s"] / r["grown_floor_cpu_s"]
        rows.append((f"service: a full resync of {r['grown_to']:,} VMs at most 2x the floor's "
                     "CPU", (f"{ratio:.2f}x ({r['grown_resync_cpu_s']:.2f} s vs "
                             f"{r['grown_floor_cpu_s']:.2f} s{_resync_rounds(r)})"),
                     _met(ratio <= 2)))
        rows.append((f"service: idle CPU under 0.1 % with {r['grown_to']:,} managed VMs",
                     f"{r['grown_idle_cpu_share'] * 100:.3f} %",
                     _met(r["grown_idle_cpu_share"] < 0.001)))
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
            ("`reconcile` is the default command: after the untimed warm-up pass recorded "
             "its no-op proof (controller/proof.py), it replays it when every input reads "
             "as recorded (replayed: how many runs did); `--no-proof` is the normal pass. "
             "The three alternate (floor, reconcile, `--no-proof`); ratios are of the "
             "medians, pairs are each run over the floor run before it."), "",
            ("| N | floor (min) | reconcile (min) | ratio | pairs (min-max) | replayed | "
             "`--no-proof` (min) | ratio | pairs | CPU floor / reconcile / `--no-proof` | "
             "CPU ratio reconcile / `--no-proof` | libvirt calls per domain, normal pass "
             "(calls / domains on the host) | in-process pass | peak RSS reconcile / floor "
             "(MiB) |"),
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: | ---: |"]
    for r in section["rows"]:
        pairs = r.get("pairs")
        spread = (f"{pairs['wall']['min']:.2f}-{pairs['wall']['max']:.2f}x" if pairs else "-")
        cpu_ratio = f"{r['cpu_ratio']:.2f}x" if "cpu_ratio" in r else "-"
        normal, normal_pairs = r.get("no_proof"), r.get("no_proof_pairs")
        replayed = (f"{r['replays']}/{len(r['reconcile']['times'])}" if "replays" in r
                    else "-")
        if normal and normal_pairs:
            wall = normal_pairs["wall"]
            no_proof = (f"{_med(normal)} | {r['no_proof_ratio']:.2f}x | "
                        f"{wall['min']:.2f}-{wall['max']:.2f}x")
            no_proof_cpu, no_proof_cpu_ratio = _cpu(normal), f"{r['no_proof_cpu_ratio']:.2f}x"
        else:
            no_proof, no_proof_cpu, no_proof_cpu_ratio = "- | - | -", "-", "-"
        out.append(f"| {r['n']} | {_med(r['floor'])} | {_med(r['reconcile'])} "
                   f"| {r['ratio']:.2f}x | {spread} | {replayed} | {no_proof} "
                   f"| {_cpu(r['floor'])} / {_cpu(r['reconcile'])} / {no_proof_cpu} "
                   f"| {cpu_ratio} / {no_proof_cpu_ratio} "
                   f"| {r['calls_per_vm']:.2f} ({r['calls']} / "
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

