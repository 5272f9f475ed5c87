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
"undefine the source".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
from .seed import plan_seed, seed_cleanup_on_removal
from .storage import StorageView, plan_storage
from .vm import Machines, plan, removal_steps


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


def plan_placement(spec: VMSpec, situation: Situation) -> Plan:
    """The plan for `spec` given everything observed of its name."""
    if situation.unknown:
        return Plan(failure=(
            f"unknown: host {', '.join(situation.unknown)} held this VM at its last listing "
            "and is unreachable now; nothing is done until it answers"))
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
    if spec.state is DesiredState.ABSENT:
        gone = plan(spec, situation.here, machines=situation.machines)
        if gone.conflict:
            return gone
        return replace(gone, steps=gone.steps + seed_cleanup_on_removal(spec, view.seeds))
    storage = plan_storage(spec, view)
    if storage.failure:
        return Plan(failure=storage.failure, terminal=storage.terminal)
    seed = plan_seed(spec, situation.here, view.seeds) if spec.cloud_init else None
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

    if spec.state is DesiredState.ABSENT or (tgt.exists and not src.power.active):
        why = "state is absent" if spec.state is DesiredState.ABSENT else (
            f"{move}: finish, {target} has the VM")
        removal = [replace(step, host=copy.host)
                   for step in removal_steps(src, why, stop_timeout=spec.stop_timeout)]
        there = plan(spec, tgt, machines=situation.machines)
        return replace(there, steps=tuple(removal) + there.steps)
    marked = domainxml.mark_owner(src.saved_xml or "", spec.host, spec.source)
    if (spec.move_strategy is MoveStrategy.LIVE and src.power is Power.RUNNING
            and spec.state is DesiredState.RUNNING):
        return Plan(steps=(Step(Action.MIGRATE, f"{move} (live)", host=copy.host,
                                to_host=situation.host, xml=marked),))
    steps = []
    if src.autostart:
        steps.append(Step(Action.AUTOSTART, f"{move}: never boot on {source}",
                          autostart=False, host=copy.host))
    if src.power.active:
        (stop,) = removal_steps(src, f"{move} (cold)", stop_timeout=spec.stop_timeout)[:1]
        steps.append(replace(stop, host=copy.host))
    steps.append(Step(Action.DEFINE, f"{move}: {source}'s definition, same UUID", xml=marked,
                      host=situation.host))
    return Plan(steps=tuple(steps),
                after=(Step(Action.UNDEFINE, f"{move}: done", host=copy.host),))


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
