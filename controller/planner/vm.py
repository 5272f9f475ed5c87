"""plan(desired, observed) -> Plan: the steps that take one domain to its manifest. Pure.

Called by `controller.planner.placement` (and through it by the reconciler, under
the VM's lock, right after observing the domain).
Never imports libvirt. Steps come in the contract's fixed order, each only
when needed: set-memory, attach/detach (hot-plug), shutdown/destroy, undefine, define,
autostart, start.

What is compared:
- the saved (persistent) definition against the manifest decides `define`;
- the live definition of a running domain decides whether a restart is needed,
  so a `next-boot` VM whose new definition is saved stays "restart pending";
- `currentMemory` is judged on the saved definition only: a live balloon
  request succeeds without changing what libvirt reports unless the guest runs
  a balloon driver, so the live value would show drift forever.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from .. import domainxml
from ..model import (
    Action,
    Change,
    DesiredState,
    Disk,
    DomainConfig,
    Interface,
    Observed,
    Plan,
    Power,
    Step,
    UpdatePolicy,
    VMSpec,
)
from ..units import format_kib, round_up_mib
from .devices import device_changes, hotplug_steps, live_changes, refusal

if TYPE_CHECKING:
    from .seed import SeedPlan

#: Machine aliases ('pc') to libvirt's canonical names ('pc-i440fx-7.2'), as the
#: reconciler resolved them on the VM's host when it observed the domain.
Machines = Mapping[str, str]


Created = tuple[tuple[str, str], ...]


def plan(spec: VMSpec, observed: Observed, *, machines: Machines | None = None,
         created: Created = (), seed: SeedPlan | None = None,
         cpu_models: Collection[str] | None = None) -> Plan:
    """The ordered steps that take `observed` to `spec`, each with its reason.

    `created`: the volumes (pool, name) the VM's storage steps create before these
    steps run: the definition records them in its ownership mark. `seed`: the
    cloud-init seed the definition attaches (seed.py). `cpu_models`: the CPU models the
    host knows, when the manifest names one (None: not checked)."""
    if spec.state is not DesiredState.ABSENT and (observed.managed or spec.adopt
                                                  or not observed.exists):
        saved = observed.saved if observed.exists else None
        machine = (machines or {}).get(spec.machine, spec.machine) if spec.machine else (
            saved.machine if saved else None)
        refused = refusal(spec, saved, machine=machine, cpu_models=cpu_models)
        if refused:
            return Plan(failure=refused, terminal=True)
    if not observed.exists:
        return _plan_create(spec, "the domain does not exist", created, seed)
    if not observed.managed and not spec.adopt:
        return Plan(conflict=(
            f"domain '{spec.name}' exists and is not managed by reconcile; "
            "set spec.adopt: true to take it over"
        ))
    if spec.state is DesiredState.ABSENT:
        return _plan_remove(observed, spec, "state is absent")
    saved = observed.saved
    assert saved is not None  # an existing domain always has a definition
    if spec.uuid and spec.uuid.lower() != saved.uuid:
        return _plan_replace(spec, observed, saved, created, seed)
    return _plan_update(spec, observed, saved, machines or {}, created, seed)


def _plan_create(spec: VMSpec, reason: str, created: Created, seed: SeedPlan | None) -> Plan:
    if spec.state is DesiredState.ABSENT:
        return Plan()
    if seed is not None and not spec.uuid:
        spec = replace(spec, uuid=seed.uuid)  # the seed's instance-id is this UUID
    steps = [Step(Action.DEFINE, reason, xml=domainxml.build_domain(
        spec, created=created, seed=seed.seed if seed else None))]
    if spec.autostart:
        steps.append(Step(Action.AUTOSTART, "autostart is wanted", autostart=True))
    if spec.state is DesiredState.RUNNING:
        steps.append(Step(Action.START, "state is running"))
    return Plan(steps=tuple(steps))


def _stop_step(reason: str, *, stop_timeout: int) -> Step:
    """A graceful shutdown of `stop_timeout` seconds before a destroy, or a destroy at once."""
    if stop_timeout > 0:
        return Step(Action.SHUTDOWN, reason, timeout=stop_timeout)
    return Step(Action.DESTROY, reason)


def removal_steps(observed: Observed, reason: str, *, stop_timeout: int) -> tuple[Step, ...]:
    """Stop (gracefully for `stop_timeout` seconds, if any) and undefine a domain.

    Used for `state: absent`, a replaced UUID, moves, and orphans.
    """
    steps = []
    if observed.power.active:
        steps.append(_stop_step(reason, stop_timeout=stop_timeout))
    if observed.persistent:
        steps.append(Step(Action.UNDEFINE, reason))
    return tuple(steps)


def _plan_remove(observed: Observed, spec: VMSpec, reason: str) -> Plan:
    steps = removal_steps(observed, reason, stop_timeout=spec.stop_timeout)
    if spec.state is DesiredState.ABSENT and observed.saved is not None:
        from .storage import delete_steps

        steps += delete_steps(spec, observed.saved.created_volumes)
    return Plan(steps=steps)


def _plan_replace(spec: VMSpec, observed: Observed, saved: DomainConfig,
                  created: Created, seed: SeedPlan | None) -> Plan:
    """A pinned UUID that differs: the old domain goes, a new one is defined."""
    change = Change("uuid", saved.uuid, spec.uuid.lower() if spec.uuid else "", needs_restart=True)
    reason = f"{change}: the domain must be replaced"
    if (observed.power.active and spec.state is DesiredState.RUNNING
            and spec.update_policy is UpdatePolicy.NEXT_BOOT):
        return Plan(changes=(change,), restart_pending=f"{change} needs the VM stopped")
    removal = _plan_remove(observed, spec, reason)
    steps = list(removal.steps)
    steps.append(Step(Action.DEFINE, reason,
                      xml=domainxml.build_domain(spec, observed.saved_xml, created=created,
                                                 seed=seed.seed if seed else None)))
    if spec.autostart:
        steps.append(Step(Action.AUTOSTART, "autostart is wanted", autostart=True))
    if spec.state is DesiredState.RUNNING:
        steps.append(Step(Action.START, "state is running"))
    return Plan(steps=tuple(steps), changes=(change,))


def _plan_update(spec: VMSpec, observed: Observed, saved: DomainConfig,
                 machines: Machines, created: Created, seed: SeedPlan | None) -> Plan:
    changes = _config_changes(spec, saved, machines)
    restart_changes: list[Change] = []
    live_steps: list[Step] = []
    if observed.power.active and observed.live is not None:
        restart_changes = _restart_changes(spec, observed.live, machines)
        restart_changes += live_changes(spec, saved, observed.live)
        if spec.state is DesiredState.RUNNING:
            live_steps, hot = hotplug_steps(spec, observed.live)
            others = [change for change in restart_changes if change.field not in hot]
            if others and spec.update_policy is UpdatePolicy.RESTART:
                live_steps = []  # a restart comes anyway; the new definition brings them
            else:
                restart_changes = others
                changes = [replace(change, needs_restart=False) if change.field in hot
                           else change for change in changes]
    active = observed.power.active
    steps: list[Step] = []

    restarting = bool(restart_changes) and spec.update_policy is UpdatePolicy.RESTART
    if (active and spec.state is DesiredState.RUNNING and not restarting
            and spec.current_memory_kib != saved.current_memory_kib
            and observed.live is not None
            and spec.current_memory_kib <= observed.live.memory_kib):
        steps.append(Step(
            Action.SET_MEMORY,
            f"currentMemory {format_kib(saved.current_memory_kib)} → "
            f"{format_kib(spec.current_memory_kib)} (live)",
            memory_kib=spec.current_memory_kib,
        ))
    steps.extend(live_steps)

    stopping = False
    restart_pending = None
    if active and spec.state is DesiredState.STOPPED:
        steps.append(_stop_step("state is stopped", stop_timeout=spec.stop_timeout))
        stopping = True
    elif active and restart_changes:
        summary = ", ".join(str(change) for change in restart_changes)
        if spec.update_policy is UpdatePolicy.RESTART:
            steps.append(_stop_step(f"{summary} needs a restart", stop_timeout=spec.stop_timeout))
            stopping = True
        else:
            restart_pending = f"{summary} takes effect at the next boot"

    define_reasons = [str(change) for change in changes]
    if not saved.managed:
        define_reasons.append("adopt: mark the domain as managed")
    else:
        if saved.owner != spec.host:
            define_reasons.append(f"ownership mark: host {saved.owner or '(-c)'} → "
                                  f"{spec.host or '(-c)'}")
        if saved.source != spec.source:
            define_reasons.append(f"ownership mark: manifest {saved.source or '(none)'} → "
                                  f"{spec.source}")
        unrecorded = [f"{pool}/{name}" for pool, name in created
                      if (pool, name) not in saved.created_volumes]
        if unrecorded:
            define_reasons.append(f"ownership mark: created {', '.join(unrecorded)}")
    if seed is not None and seed.reason:
        define_reasons.append(seed.reason)
    if not observed.persistent:
        define_reasons.append("the domain is transient: make it persistent")
    if define_reasons:
        steps.append(Step(
            Action.DEFINE, ", ".join(define_reasons),
            xml=domainxml.build_domain(spec, observed.saved_xml, created=created,
                                       seed=seed.seed if seed else None),
        ))

    if observed.autostart != spec.autostart:
        steps.append(Step(
            Action.AUTOSTART,
            f"autostart {str(observed.autostart).lower()} → {str(spec.autostart).lower()}",
            autostart=spec.autostart,
        ))

    if spec.state is DesiredState.RUNNING:
        if not active:
            steps.append(Step(Action.START, "state is running, the domain is stopped"))
        elif stopping:
            steps.append(Step(Action.START, "start again after the restart"))
        elif observed.power is Power.PAUSED:
            steps.append(Step(Action.START, "state is running, the domain is paused"))

    all_changes = tuple(changes) + tuple(c for c in restart_changes if c not in changes)
    return Plan(steps=tuple(steps), changes=all_changes, restart_pending=restart_pending)


def _config_changes(spec: VMSpec, saved: DomainConfig, machines: Machines) -> list[Change]:
    """Differences between the manifest and the saved definition."""
    changes = _restart_changes(spec, saved, machines, exact_memory=True)
    changes += device_changes(spec, saved)
    if spec.current_memory_kib != saved.current_memory_kib:
        after_memory = 1 if changes and changes[0].field == "memory" else 0
        changes.insert(after_memory, Change(
            "currentMemory", format_kib(saved.current_memory_kib),
            format_kib(spec.current_memory_kib),
        ))
    return changes


def _restart_changes(
    spec: VMSpec,
    config: DomainConfig,
    machines: Machines,
    *,
    exact_memory: bool = False,
) -> list[Change]:
    """Differences in what a running domain can only take at its next boot.

    A running QEMU domain reports memory rounded up to whole MiB, so the live
    comparison rounds the manifest's value the same way.
    """
    changes = []
    wanted_memory = spec.memory_kib if exact_memory else round_up_mib(spec.memory_kib)
    have_memory = config.memory_kib if exact_memory else round_up_mib(config.memory_kib)
    if wanted_memory != have_memory:
        changes.append(Change(
            "memory", format_kib(config.memory_kib), format_kib(spec.memory_kib), True,
        ))
    if spec.vcpus != config.vcpus:
        changes.append(Change("vcpus", str(config.vcpus), str(spec.vcpus), True))
    if spec.type != config.type:
        changes.append(Change("type", config.type, spec.type, True))
    if spec.arch and spec.arch != config.arch:
        changes.append(Change("arch", str(config.arch), spec.arch, True))
    if spec.machine and config.machine:
        wanted = machines.get(spec.machine, spec.machine)
        have = machines.get(config.machine, config.machine)
        if wanted != have:
            changes.append(Change("machine", config.machine, spec.machine, True))
    if _attached(spec.disks) != _attached(config.disks):
        changes.append(Change(
            "disks", _describe_disks(config.disks), _describe_disks(spec.disks), True,
        ))
    if not _interfaces_match(spec.interfaces, config.interfaces):
        changes.append(Change(
            "interfaces", _describe_interfaces(config.interfaces),
            _describe_interfaces(spec.interfaces), True,
        ))
    return changes


def _interfaces_match(wanted: tuple[Interface, ...], have: tuple[Interface, ...]) -> bool:
    if len(wanted) != len(have):
        return False
    for desired, actual in zip(wanted, have, strict=True):
        if (desired.network, desired.bridge, desired.model) != (
                actual.network, actual.bridge, actual.model):
            return False
        if desired.mac and desired.mac.lower() != (actual.mac or ""):
            return False
    return True


def _by_target(disks: tuple[Disk, ...]) -> list[Disk]:
    return sorted(disks, key=lambda disk: disk.target)


def _attached(disks: tuple[Disk, ...]) -> list[tuple[object, ...]]:
    """What the domain XML holds of each disk (not how a volume is created)."""
    return sorted(disk.attached for disk in disks)


def _describe_disks(disks: tuple[Disk, ...]) -> str:
    if not disks:
        return "none"
    return "; ".join(
        f"{d.target}={d.where} ({d.format}, {d.bus}{', readonly' if d.readonly else ''})"
        for d in _by_target(disks)
    )


def _describe_interfaces(interfaces: tuple[Interface, ...]) -> str:
    if not interfaces:
        return "none"
    return "; ".join(
        interface.attachment + (f" {interface.mac}" if interface.mac else "")
        for interface in interfaces
    )
