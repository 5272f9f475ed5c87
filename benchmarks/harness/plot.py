"""time_vs_n.png: reconcile against its floor, one panel per kind of pass.

`bench.py` calls `plot(results, path)` after `report` has the numbers; it returns the
Markdown line that RESULTS.md shows in its place: the image, or why there is none
(matplotlib is optional: `make bench` installs it when PyPI answers). Panels: the no-op
pass against N (log-log, with the 2x target), converge at the default `--workers`, the
30-guest workers sweep, and validation against the number of manifests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.runs import Json


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
