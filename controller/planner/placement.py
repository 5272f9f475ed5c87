"""Where a VM is and where it should be: the plan of one VM name across its hosts. Pure.

Called by the reconciler with everything it observed of one name, under the
VM's lock: the domain on the VM's own host, the managed copies on the other
reachable hosts, and the hosts that last held the name and cannot be reached.

- A host that may hold the VM but cannot be reached makes the VM unknown: no
  step at all (never two copies).
- No copy elsewhere: the usual plan on the VM's host (vm.py).
- One copy elsewhere: a move (see `plan_move`); more than one is a conflict.

A move's plan runs its `steps`, then what a fresh look at the target plans there,
then its `after` steps: a cold move is autostart off and stop on the source,
define the source's saved definition (same UUID, MACs) on the target, converge
there, undefine on the source. A move interrupted anywhere is finished by the
next plan: a target that holds the VM while the source's copy is stopped means
"undefine the source". Volumes move with the VM (moves.py): a cold move copies them
after the stop and before the define, a live one during the migration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .. import domainxml
from ..model import (
    Action,
    DesiredState,
    MoveStrategy,
    Observed,
    Plan,
    Power,
    Step,
    VMSpec,
)
from .vm import Machines, plan, removal_steps

if TYPE_CHECKING:  # storage, seeds and moves: imported where a VM has them
    from .moves import MoveStorage, MoveView
    from .storage import StorageView


def host_label(name: str | None) -> str:
    """How a host is named to people: its name, or '(-c)' for the -c connection."""
    return name or "(-c)"


@dataclass(frozen=True)
class Copy:
    """A managed domain of the VM's name on another host than its own."""

    host: str
    observed: Observed


@dataclass(frozen=True)
class Situation:
    """All that was observed of one VM name, afresh, under its lock."""

    host: str  # the VM's own host ("" for the -c connection)
    here: Observed  # the domain on it
    copies: tuple[Copy, ...] = ()  # managed copies on other reachable hosts
    unknown: tuple[str, ...] = ()  # why hosts that may hold the VM cannot be asked
    machines: Machines | None = None
    storage: StorageView | None = None  # the VM's volumes and images on its host
    cpu_models: frozenset[str] | None = None  # the host's, when the manifest names a model
    #: why a network or pool the VM needs stands in the way (missing, failed): nothing of
    #: its plan runs (controller/resourcekinds.py: vm_blocker)
    blocked: str | None = None
    #: in a move: the VM's storage on the source and the target (None: it has none)
    move_storage: MoveView | None = None


def plan_placement(spec: VMSpec, situation: Situation) -> Plan:
    """The plan for `spec` given everything observed of its name."""
    if situation.unknown:
        return Plan(failure=(
            f"unknown: host {', '.join(situation.unknown)} held this VM at its last listing "
            "and is unreachable now; nothing is done until it answers"))
    if situation.blocked and spec.state is not DesiredState.ABSENT:
        return Plan(failure=situation.blocked)
    if not situation.copies:
        return plan_here(spec, situation)
    if len(situation.copies) > 1:
        where = ", ".join(host_label(copy.host) for copy in situation.copies)
        return Plan(conflict=f"managed copies on hosts {where}; keep one by hand")
    return plan_move(spec, situation)


def plan_here(spec: VMSpec, situation: Situation) -> Plan:
    """The VM on its own host: its storage steps (storage.py), then its domain's."""
    view = situation.storage
    if view is None:
        return plan(spec, situation.here, machines=situation.machines,
                    cpu_models=situation.cpu_models)
    from .storage import plan_storage

    # The seed planner (with the cloud-init package: ~12 M instructions) only for a VM
    # with a seed, or one being removed (its seed volume goes with it).
    if spec.state is DesiredState.ABSENT:
        from .seed import seed_cleanup_on_removal

        gone = plan(spec, situation.here, machines=situation.machines)
        if gone.conflict:
            return gone
        return replace(gone, steps=gone.steps + seed_cleanup_on_removal(spec, view.seeds))
    storage = plan_storage(spec, view)
    if storage.failure:
        return Plan(failure=storage.failure, terminal=storage.terminal)
    seed = None
    if spec.cloud_init:
        from .seed import plan_seed

        seed = plan_seed(spec, situation.here, view.seeds)
    there = plan(spec, situation.here, machines=situation.machines, created=storage.created,
                 seed=seed, cpu_models=situation.cpu_models)
    if there.conflict:
        return there
    notes = [*storage.notes, *([there.note] if there.note else [])]
    before = storage.steps + (seed.steps if seed else ())
    after = seed.cleanup if seed else ()
    return replace(there, steps=before + there.steps + after, note="; ".join(notes) or None)


def plan_move(spec: VMSpec, situation: Situation) -> Plan:
    """Move the one copy elsewhere to the VM's own host, or finish such a move."""
    (copy,) = situation.copies
    src, tgt = copy.observed, situation.here
    source, target = host_label(copy.host), host_label(situation.host)
    move = f"move {source} → {target}"
    if tgt.exists and not tgt.managed and not spec.adopt:
        return plan(spec, tgt, machines=situation.machines)  # the usual conflict
    if tgt.exists and tgt.saved and src.saved and tgt.saved.uuid != src.saved.uuid:
        return Plan(conflict=(f"different domains named '{spec.name}' on {source} "
                              f"({src.saved.uuid}) and {target} ({tgt.saved.uuid})"))
    if src.power.active and tgt.power.active:
        return Plan(conflict=f"running on both {source} and {target}; stop one by hand")

    if spec.state is DesiredState.ABSENT:
        return _finish(spec, situation, "state is absent", ())
    live = (spec.move_strategy is MoveStrategy.LIVE and src.power is Power.RUNNING
            and spec.state is DesiredState.RUNNING)
    carried = _carried(spec, situation, live=live)
    if carried.failure:
        return Plan(failure=f"{move}: {carried.failure}", terminal=carried.terminal)
    if tgt.exists and not src.power.active:
        # the define on the target came after every copy; only what is missing there now
        # (a volume of the manifest's that neither host had) is made or copied first
        return _finish(spec, situation, f"{move}: finish, {target} has the VM",
                       _on(carried.before, situation.host)
                       + _on(carried.copies, copy.host, situation.host))
    marked = domainxml.mark_owner(src.saved_xml or "", spec.host, spec.source,
                                  created=carried.created, seed=carried.seed)
    before = _on(carried.before, situation.host)
    note = _kept_note(carried, source)
    if live:
        return Plan(steps=before + _on(carried.copies, copy.host, situation.host) + (
            Step(Action.MIGRATE, f"{move} (live" + (", its disks copied)" if carried.migrate
                                                   else ")"),
                 host=copy.host, to_host=situation.host, xml=marked,
                 volumes=carried.migrate),), note=note)
    steps = list(before)
    if src.autostart:
        steps.append(Step(Action.AUTOSTART, f"{move}: never boot on {source}",
                          autostart=False, host=copy.host))
    if src.power.active:
        (stop,) = removal_steps(src, f"{move} (cold)", stop_timeout=spec.stop_timeout)[:1]
        steps.append(replace(stop, host=copy.host))
    steps += _on(carried.compare + carried.copies, copy.host, situation.host)
    steps.append(Step(Action.DEFINE, f"{move}: {source}'s definition, same UUID", xml=marked,
                      host=situation.host))
    return Plan(steps=tuple(steps), note=note,
                after=(Step(Action.UNDEFINE, f"{move}: done", host=copy.host),))


def _finish(spec: VMSpec, situation: Situation, why: str, first: tuple[Step, ...]) -> Plan:
    """Remove the source's copy (after `first`), then converge the target's."""
    (copy,) = situation.copies
    removal = tuple(replace(step, host=copy.host) for step in
                    removal_steps(copy.observed, why, stop_timeout=spec.stop_timeout))
    there = plan(spec, situation.here, machines=situation.machines)
    return replace(there, steps=first + removal + there.steps)


def _carried(spec: VMSpec, situation: Situation, *, live: bool) -> MoveStorage:
    from .moves import MoveStorage, plan_move_storage

    view = situation.move_storage
    if view is None:
        return MoveStorage()
    (copy,) = situation.copies
    return plan_move_storage(spec, copy.observed, view, source=host_label(copy.host),
                             target=host_label(situation.host), live=live)


def _on(steps: tuple[Step, ...], host: str, to_host: str | None = None) -> tuple[Step, ...]:
    return tuple(replace(step, host=host, to_host=to_host) for step in steps)


def _kept_note(carried: MoveStorage, source: str) -> str | None:
    notes = list(carried.notes)
    if carried.kept:
        notes.append(f"the volumes on {source} are kept: {', '.join(carried.kept)}")
    return "; ".join(notes) or None


def preview_arrival(spec: VMSpec, situation: Situation, move: Plan) -> tuple[Step, ...]:
    """What converging on the target would add after `move`'s own steps, as a dry run
    shows it: planned on the definition the move brings there."""
    (copy,) = situation.copies
    src = copy.observed
    arriving = next((step.xml for step in move.steps if step.xml), None)
    if arriving is None:
        return ()
    migrates = any(step.action is Action.MIGRATE for step in move.steps)
    there = Observed(spec.name, exists=True, power=src.power if migrates else Power.STOPPED,
                     persistent=True, saved=domainxml.parse_domain(arriving), live=src.live,
                     saved_xml=arriving)
    return plan(spec, there, machines=situation.machines).steps
