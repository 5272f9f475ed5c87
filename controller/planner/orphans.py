"""What to do with a managed domain that no manifest names. Pure.

Called by the reconciler and by `passes.run_pass`. Such a domain is one of:

- left as it is: the manifest it came from (its ownership mark says which file) or a
  document naming it is invalid. An unreadable manifest is not a missing one.
- an orphan: reported, and removed (destroy + undefine, never its storage) only when
  pruning was asked for, every manifest loaded cleanly, and no more than --max-prune
  domains would go in all. Otherwise none goes, and the refusal says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Observed, Plan
from .vm import removal_steps

ORPHAN_REASON = "orphan: no manifest names this managed domain"


@dataclass(frozen=True)
class Manifests:
    """What the planner needs to know of the manifest directory's load."""

    complete: bool  # loaded cleanly: no invalid document, not missing or empty
    problem: str | None  # why it is not complete, if it is not
    invalid_files: frozenset[str]  # files with an invalid document
    invalid_names: frozenset[str]  # names seen in invalid documents
    invalid_sources: dict[str, str]  # name → the invalid file that names it


@dataclass(frozen=True)
class PruneVerdict:
    """Whether the orphans of this pass may be pruned; if not, why, and whether that makes
    each of them failed (too many) rather than left alone (an incomplete load)."""

    allowed: bool
    reason: str | None = None
    fails: bool = False

    @property
    def refusal(self) -> str | None:
        return f"nothing pruned: {self.reason}" if self.reason else None


def left_as_is(name: str, mark_source: str | None, manifests: Manifests) -> str | None:
    """Why the managed domain `name` (whose mark names `mark_source`) must be left as it
    is although no valid manifest names it, if it must."""
    if mark_source is not None and mark_source in manifests.invalid_files:
        return f"left as it is: its manifest {mark_source} is invalid"
    if name in manifests.invalid_names:
        file = manifests.invalid_sources.get(name)
        return f"left as it is: its manifest {file + ' ' if file else ''}is invalid"
    return None


def prune_verdict(manifests: Manifests, *, orphans: int, max_prune: int) -> PruneVerdict:
    """Whether `orphans` orphans may go now."""
    if not manifests.complete:
        return PruneVerdict(False, manifests.problem)
    if orphans > max_prune:
        return PruneVerdict(False, f"{orphans} orphans exceed --max-prune {max_prune}",
                            fails=True)
    return PruneVerdict(True)


def plan_orphan(observed: Observed, verdict: PruneVerdict) -> Plan:
    """The removal of an orphan the verdict allows; a domain that is no longer a managed
    one is left alone."""
    if not observed.exists or not observed.managed:
        return Plan(note="no longer a managed domain")
    if not verdict.allowed:
        why = f"orphan not pruned: {verdict.reason}"
        return Plan(failure=why) if verdict.fails else Plan(note=why)
    return Plan(steps=removal_steps(observed, ORPHAN_REASON, stop_timeout=0))
