"""results/STORAGE.md: the storage benchmark's figures, each next to its floor, written
from results/storage.json alone.

Called by `storage_bench.py` after a run and by `storage_bench.py --render` (after
editing the hand-written `results/STORAGE-NOTES.md`, which is included at the end). One
summary table (figure, its floor, the ratio of the medians), then each section's rows
with min and max and what ran beside them (the 1-minute load average and the other
domains on the host before each round).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from harness.runs import Json

NOTES = "STORAGE-NOTES.md"


def render(results: Json, notes: str = "") -> str:
    machine, sections = results["machine"], results["sections"]
    lines = ["# Storage benchmark (issues 13 and 14)", "",
             "Written by `benchmarks/storage_bench.py` from `storage.json` (`--render` "
             "redraws it); command: `make bench-storage` (benchmarks/README.md).", "",
             f"Machine: {machine['cpu']}, {machine['nproc']} cores, "
             f"{machine['memory_gib']} GiB, {machine['os']}, libvirt {machine['libvirt']}, "
             f"{machine['hypervisor']}, Python {machine['python']}.", "",
             "## Summary", "",
             "| figure | reconcile (median) | floor (median) | ratio | load (1 min) |",
             "| --- | --- | --- | --- | --- |"]
    details: list[str] = []
    for name in ("import", "overlays", "seeds", "boot"):
        if name not in sections:
            continue
        data = sections[name]
        details += ["", f"## {name}", "",
                    f"Measured {data['when']} at {_code(data['code'])}"
                    + (" (--quick)" if data.get("quick") else "")
                    + f"; floor: {data.get('floor', 'floors/storage.py')}.", ""]
        if name == "boot":
            lines += _boot_summary(data)
            details += _boot_details(data)
        else:
            for row in data["rows"]:
                lines += _summary_rows(name, row)
            details += _details(data["rows"])
    text = "\n".join(lines + details) + "\n"
    return text + ("\n" + notes.strip() + "\n" if notes.strip() else "")


def write(out: Path, results: Json) -> Path:
    notes = out / NOTES
    target = out / "STORAGE.md"
    target.write_text(render(results, notes.read_text() if notes.exists() else ""))
    return target


def _code(code: Json) -> str:
    dirty = code.get("dirty") or []
    return (f"commit {code.get('commit')}" + (f" (+{len(dirty)} changed files)" if dirty else "")
            + (f", {code['note']}" if code.get("note") else ""))


def _label(name: str, row: Json) -> str:
    if name == "import":
        return f"import of the image, {row['case']}"
    if name == "overlays":
        return f"{row['n']} VMs from one image, {row['state']}"
    if row["case"] == "reconcile":
        return f"{row['n']} stopped VMs with cloud-init seeds"
    return f"{row['n']} seeds alone, one after another"


def _load(row: Json) -> str:
    loads = [entry["loadavg"][0] for entry in row.get("others", [])]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"


def _summary_rows(name: str, row: Json) -> list[str]:
    """Each measured side against each floor (sides named floor...: `floor+sha256sum` is
    the download floor that also verifies, as reconcile does)."""
    sides = row["sides"]
    floor = sides["floor"]
    ours = {side: m for side, m in sides.items() if not side.startswith("floor")}
    floors = {side: m for side, m in sides.items() if side.startswith("floor")}
    out = []
    for side, measured in ours.items():
        for floor_side, base in floors.items():
            label = (_label(name, row) + ("" if side == "reconcile" else f" ({side})")
                     + ("" if floor_side == "floor" else f", vs {floor_side}"))
            out.append(f"| {label} | {measured['median']:.2f} s | {base['median']:.2f} s | "
                       f"{measured['median'] / base['median']:.2f}x | {_load(row)} |")
    if "import_step" in row:
        step = row["import_step"]["median"]
        out.append(f"| {_label(name, row)}: the import step alone (--step-log) | "
                   f"{step:.2f} s | {floor['median']:.2f} s | {step / floor['median']:.2f}x "
                   f"| {_load(row)} |")
    if "steps_span" in row:
        span = row["steps_span"]["median"]
        out.append(f"| {_label(name, row)}: the steps alone (--step-log, first start to "
                   f"last done; the floor with its start-up) | {span:.2f} s | "
                   f"{floor['median']:.2f} s | {span / floor['median']:.2f}x | {_load(row)} |")
    return out


def _details(rows: Sequence[Json]) -> list[str]:
    out = ["| case | side | median | min | max | ratio | runs (s) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        case = " ".join(str(row[k]) for k in ("case", "state", "n", "workers") if k in row)
        for side, m in row["sides"].items():
            times = ", ".join(f"{t:.2f}" for t in m["times"])
            out.append(f"| {case} | {side} | {m['median']:.2f} | {m['min']:.2f} | "
                       f"{m['max']:.2f} | {m['ratio']:.2f}x | {times} |")
        if "reconcile_noop" in row:
            noop = row["reconcile_noop"]
            out.append(f"| {case} | reconcile no-op pass (not in the ratio) | "
                       f"{noop['median']:.2f} | {noop['min']:.2f} | {noop['max']:.2f} | - | "
                       + ", ".join(f"{t:.2f}" for t in noop["times"]) + " |")
    out += ["", "Before each round (1-minute load; other domains on the host, running):", ""]
    for row in rows:
        case = " ".join(str(row[k]) for k in ("case", "state", "n") if k in row)
        rounds = "; ".join(f"load {e['loadavg'][0]:.1f}, {e['domains']} domains "
                           f"({e['running']} running)"
                           + (f", {len(e['failed'])} failed run(s) redone" if e["failed"]
                              else "") for e in row.get("others", []))
        out.append(f"- {case}: {rounds}")
    return out


def _boot_time(row: Json, label: str) -> float | None:
    stats = row[label]
    return stats["max"] if stats["seen"] == stats["of"] else None


def _boot_summary(data: Json) -> list[str]:
    rows = {row["side"]: row for row in data["rows"] if row["round"] == 0}
    floor = rows.get("floor")
    out = []
    for side, row in rows.items():
        if side == "floor" or floor is None:
            continue
        out.append(f"| {data['n']} guests booted, the command alone (volumes, seeds, "
                   f"define, start) ({side}) | {row['command_s']:.1f} s | "
                   f"{floor['command_s']:.1f} s | {row['command_s'] / floor['command_s']:.2f}x "
                   f"| {row['before']['loadavg'][0]:.1f} / "
                   f"{floor['before']['loadavg'][0]:.1f} |")
        for label, what in (("user-data", "console shows the user data's marker"),
                            ("login", "console shows a login prompt"),
                            ("multi-user", "console says Multi-User System")):
            if label not in row or label not in floor:
                continue  # a run from before the label was watched
            ours, base = _boot_time(row, label), _boot_time(floor, label)
            ratio = f"{ours / base:.2f}x" if ours and base else "-"
            out.append(f"| {data['n']} guests, manifest until the last one's {what} "
                       f"({side}) | {_fmt(ours, row[label])} | {_fmt(base, floor[label])} | "
                       f"{ratio} | {row['before']['loadavg'][0]:.1f} / "
                       f"{floor['before']['loadavg'][0]:.1f} |")
    return out


def _fmt(seconds: float | None, stats: Json) -> str:
    if seconds is None:
        return f"{stats['seen']} of {stats['of']} seen"
    return f"{seconds:.0f} s"


def _boot_details(data: Json) -> list[str]:
    out = [f"{data['n']} Debian 12 cloud guests, {data['memory_mib']} MiB, type qemu "
           f"(TCG), --workers {data['workers']}, timeout {data['timeout_s']:.0f} s. Times "
           "from the command's start.", "",
           "| side | round | command | multi-user: median / max (seen) | "
           "login prompt: median / max (seen) | "
           "user data: median / max (seen) | load before / after | error |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in data["rows"]:
        cells = []
        for label in ("multi-user", "login", "user-data"):
            s = row.get(label, {"seen": 0, "of": 0})
            cells.append(f"{s['median']:.0f} / {s['max']:.0f} s ({s['seen']} of {s['of']})"
                         if s["seen"] else f"0 of {s['of']}")
        error = re.sub(r"\x1b\[[0-9;]*m", "", row.get("error") or "")  # kcli's colours
        error = error.replace("\n", " ").replace("|", "/")[:120]
        out.append(f"| {row['side']} | {row['round']} | {row['command_s']:.1f} s | "
                   f"{' | '.join(cells)} | {row['before']['loadavg'][0]:.1f} / "
                   f"{row['after']['loadavg'][0]:.1f} | {error or '-'} |")
    return out
