"""Shared settings of the bad-input suite: how many fuzz examples, and a tally to report.

`RECONCILE_FUZZ_EXAMPLES` sets the examples per property (default 200, so the default
suite stays fast); examples are derandomized, so a run is reproducible. The tally of
examples tried and injected inputs rejected is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

FUZZ_EXAMPLES = int(os.environ.get("RECONCILE_FUZZ_EXAMPLES", "200"))

#: property name → examples run; "injected inputs rejected" → count.
TALLY: Counter[str] = Counter()


def fuzz_settings(share: float = 1.0) -> settings:
    """Settings for one property: `share` of RECONCILE_FUZZ_EXAMPLES, at least 10."""
    return settings(
        max_examples=max(10, int(FUZZ_EXAMPLES * share)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture,
                               HealthCheck.filter_too_much, HealthCheck.large_base_example],
    )


def count(what: str, n: int = 1) -> None:
    TALLY[what] += n


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    terminalreporter.write_sep("-", "bad input: examples tried / inputs rejected")
    for what, n in sorted(TALLY.items()):
        terminalreporter.write_line(f"{n:>8}  {what}")


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `reconcile --once` takes its locks here, not in /run."""
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))
