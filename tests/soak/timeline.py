"""What each VM's manifest said, and when: the history the soak's checks judge steps by.
Pure.

The run records every manifest write (time.time() once the file is in place, the same
clock as the step log's), and the checks ask questions over windows of time: "was this
VM's manifest invalid all along from t0 to t1?", "did it want the VM gone at some moment
between t0 and t1?". A window starts at the version in force at t0.
Used by tests/soak/run.py (recording, and what to converge to) and checks.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from .schedule import Want

INVALID = "invalid"
REMOVED = "removed"  # no manifest file: an orphan, for --prune
Desire = Want | str  # a Want, INVALID or REMOVED


@dataclass
class Timeline:
    _times: dict[str, list[float]] = field(default_factory=dict)
    _desires: dict[str, list[Desire]] = field(default_factory=dict)

    def record(self, name: str, at: float, desire: Desire) -> None:
        times = self._times.setdefault(name, [])
        assert not times or at >= times[-1], f"{name}: out of order at {at}"
        times.append(at)
        self._desires.setdefault(name, []).append(desire)

    def names(self) -> list[str]:
        return sorted(self._times)

    def at(self, name: str, when: float) -> Desire | None:
        """The desire in force at `when` (None before the first write)."""
        times = self._times.get(name, [])
        index = bisect.bisect_right(times, when) - 1
        return self._desires[name][index] if index >= 0 else None

    def during(self, name: str, start: float, end: float) -> list[Desire]:
        """Every desire in force at some moment of [start, end]."""
        times = self._times.get(name, [])
        first = max(bisect.bisect_right(times, start) - 1, 0)
        last = bisect.bisect_right(times, end)
        return self._desires.get(name, [])[first:last]

    def ever(self, name: str, start: float, end: float,
             test: Callable[[Desire], bool]) -> bool:
        return any(test(desire) for desire in self.during(name, start, end))

    def always(self, name: str, start: float, end: float,
               test: Callable[[Desire], bool]) -> bool:
        during = self.during(name, start, end)
        return bool(during) and all(test(desire) for desire in during) and (
            self.at(name, start) is not None)

    def some_invalid_throughout(self, start: float, end: float) -> bool:
        """Whether at every moment of [start, end] at least one manifest was invalid."""
        moments = sorted({start} | {time for name in self._times for time in self._times[name]
                                   if start <= time <= end})
        return all(any(self.at(name, moment) == INVALID for name in self._times)
                   for moment in moments)


def wants_gone(desire: Desire) -> bool:
    return desire == REMOVED or (isinstance(desire, Want) and desire.state == "absent")


def is_invalid(desire: Desire) -> bool:
    return desire == INVALID
