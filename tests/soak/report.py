"""What a soak measured, and the summary it prints (copied to docs/RELIABILITY.md).
Filled in by tests/soak/run.py as the soak goes."""

from __future__ import annotations

import platform
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .checks import percentile


class Settings(Protocol):
    @property
    def minutes(self) -> float: ...
    @property
    def vms(self) -> int: ...
    @property
    def mean_gap(self) -> float: ...
    @property
    def resync(self) -> float: ...
    @property
    def bound(self) -> float: ...


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "none"
    return (f"n={len(values)}, p50 {percentile(values, 0.5):.1f} s, "
            f"p99 {percentile(values, 0.99):.1f} s, max {max(values):.1f} s")


@dataclass
class Figures:
    setup: str = ""
    injected: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # found nothing to act on
    converged: defaultdict[str, list[float]] = field(
        default_factory=lambda: defaultdict(list))  # fault kind → seconds to converge
    censored: Counter[str] = field(default_factory=Counter)  # hit again before converging
    reconnects: list[float] = field(default_factory=list)  # libvirtd up → service connected
    reconnects_missed: int = 0  # the service was killed before it reconnected
    readies: list[float] = field(default_factory=list)  # a restart after kill -9 → READY=1
    readies_missed: int = 0  # killed again before READY=1
    final: float | None = None  # seconds from the last fault until every VM converged
    step_events: int = 0
    processes: tuple[int, int] = (0, 0)  # service incarnations, --once runs
    notes: Counter[str] = field(default_factory=Counter)  # what the harness had to do
    violations: list[str] = field(default_factory=list)

    def render(self, settings: Settings, *, seed: int) -> str:
        every = [value for values in self.converged.values() for value in values]
        lines = [
            f"soak: {settings.minutes:g} min of chaos, seed {seed}, {settings.vms} VMs, a "
            f"fault every {settings.mean_gap:g} s on average, --resync {settings.resync:g}, "
            f"Python {platform.python_version()}",
            f"setup: {self.setup}",
            f"faults injected: {sum(self.injected.values())} "
            + "(" + ", ".join(f"{kind} {count}" for kind, count in
                              sorted(self.injected.items())) + ")",
            "found nothing to act on (not counted): "
            + (", ".join(f"{kind} {count}" for kind, count in sorted(self.skipped.items()))
               or "none"),
            f"time to converge after a fault on a VM: {_spread(every)}",
        ]
        for kind, values in sorted(self.converged.items()):
            lines.append(f"    {kind}: {_spread(values)}")
        lines += [
            "hit by another fault before converging (no sample): "
            + (", ".join(f"{kind} {count}" for kind, count in sorted(self.censored.items()))
               or "none"),
            f"service restarted after kill -9, until READY=1: {_spread(self.readies)}"
            + (f" ({self.readies_missed} killed again first)" if self.readies_missed else ""),
            f"libvirtd back, until the service reconnected: {_spread(self.reconnects)}"
            + (f" ({self.reconnects_missed} killed first)" if self.reconnects_missed else ""),
            "every VM converged after the last fault: "
            + (f"{self.final:.1f} s (bound {settings.bound:g} s)" if self.final is not None
               else "NOT within the bound"),
            f"step events {self.step_events}; service incarnations {self.processes[0]}; "
            f"--once runs {self.processes[1]}",
            "harness notes: " + (", ".join(f"{text}: {count}" for text, count in
                                             sorted(self.notes.items())) or "none"),
            f"invariant violations: {len(self.violations)}",
        ]
        lines += [f"    {text}" for text in self.violations]
        return "\n".join(lines)
