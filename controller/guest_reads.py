"""Which outcomes of a pass have their guest read: pure predicates on outcomes.

    to_wait_for(outcomes)   the VMs a --wait waits for: converged and running
    looked_at(outcome)      whether the JSON output reads the VM's guest
    running_now(outcome)    whether the domain ran when the pass observed it

Apart from readiness.py (which re-exports them) so that the CLI can tell that a pass
reads no guest at all without importing the readers (a no-op pass over stopped VMs).
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import Cause, DesiredState, Outcome, Result

#: The results of a pass whose running VMs --wait waits for.
_WAITED_RESULTS = (Result.UNCHANGED, Result.CONVERGED, Result.RESTART_PENDING)


def looked_at(outcome: Outcome) -> bool:
    """Whether the JSON output reads this VM's guest: a manifest's VM that may exist,
    on a host that answered, unless the pass just saw it stopped and changed nothing
    (its guest is then not running: no addresses, no agent, as a look would say; the
    pass's own reads are the fresh ones, as `status` uses them)."""
    spec = outcome.spec
    if outcome.result is Result.UNCHANGED and not running_now(outcome):
        return False
    return (spec is not None and spec.state is not DesiredState.ABSENT
            and outcome.cause is not Cause.HOST_UNREACHABLE and not outcome.orphan)


def running_now(outcome: Outcome) -> bool:
    """Whether the domain ran when observed (status: a dry run, observed now)."""
    observed = outcome.observed
    return observed is not None and observed.exists and observed.power.active


def to_wait_for(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """The VMs `--wait` waits for: meant to run, and converged (or unchanged, or
    restart-pending); failed, conflicting and suspended ones are reported as they are."""
    return [outcome for outcome in outcomes
            if outcome.spec is not None and outcome.spec.state is DesiredState.RUNNING
            and outcome.result in _WAITED_RESULTS]
