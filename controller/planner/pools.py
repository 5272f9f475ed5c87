"""plan(desired, observed) for one declared storage pool on its host. Pure.

Called by the pool reconcile (controller/resources_reconcile.py, through the kinds of
controller/resourcekinds.py) under the pool's lock, right after observing it.

- Missing: define (with the ownership mark, see controller/poolxml.py), build (make
  the folder; an existing one is kept with what is in it), start, autostart.
- Not managed: a conflict, unless `adopt: true`; adoption writes the mark into the
  saved definition and changes nothing else (no restart).
- Inactive: started. Another type than dir, or another path, is refused: moving a
  pool would leave its volumes behind.
- Removal (state absent, prune): a pool is never deleted with its volumes. An empty
  one is stopped and undefined, and its folder stays; one that holds volumes stays
  defined and active, and the refusal says how many; an inactive one is started
  first, to count them.
"""

from __future__ import annotations

from ..model import Action, Change, Plan, Step
from ..poolxml import build_pool
from ..resourcemodel import PoolSpec, PoolState, Presence


def plan_pool(spec: PoolSpec, state: PoolState) -> Plan:
    """The ordered steps that take `state` to `spec`, each with its reason."""
    if state.exists and not state.managed and not spec.adopt:
        return Plan(conflict=(f"storage pool '{spec.name}' exists and is not managed by "
                              "reconcile; set spec.adopt: true to take it over"))
    if spec.state is Presence.ABSENT:
        return plan_pool_removal(state, "state is absent")
    if not state.exists:
        created = [Step(Action.DEFINE_POOL, "the pool does not exist", xml=build_pool(spec)),
                 Step(Action.BUILD_POOL, f"make its folder {spec.path} (an existing one is "
                                         "kept as it is)"),
                 Step(Action.START_POOL, "the pool is to be active")]
        if spec.autostart:
            created.append(Step(Action.AUTOSTART_POOL, "autostart is wanted", autostart=True))
        return Plan(steps=tuple(created))
    saved = state.saved
    assert saved is not None  # an existing pool always has a definition
    if saved.type != spec.type:
        return Plan(terminal=True, failure=(
            f"storage pool '{spec.name}' is a {saved.type} pool; a StoragePool manifest "
            f"describes {spec.type} pools"))
    if saved.path != spec.path:
        return Plan(terminal=True, changes=(Change("path", str(saved.path), spec.path),),
                    failure=(f"storage pool '{spec.name}' is at {saved.path}, the manifest says "
                             f"{spec.path}: a pool is not moved (its volumes would stay "
                             "behind); fix spec.path, or remove the pool first"))
    changes: list[Change] = []
    mark = saved.mark
    if mark is None:
        changes.append(Change("managed", "no", "yes"))
    elif (mark.source, mark.host) != (spec.source, spec.host):
        changes.append(Change("mark", f"{mark.source} on {mark.host or '(-c)'}",
                              f"{spec.source} on {spec.host or '(-c)'}"))
    steps = []
    if changes:
        steps.append(Step(Action.DEFINE_POOL, ", ".join(str(change) for change in changes),
                          xml=build_pool(spec, state.saved_xml)))
    if not state.active:
        steps.append(Step(Action.START_POOL, "the pool is not active"))
    if state.autostart != spec.autostart:
        steps.append(Step(Action.AUTOSTART_POOL,
                          f"autostart {str(state.autostart).lower()} → "
                          f"{str(spec.autostart).lower()}", autostart=spec.autostart))
    return Plan(steps=tuple(steps), changes=tuple(changes))


def plan_pool_removal(state: PoolState, reason: str) -> Plan:
    """Stop and undefine an empty pool (its folder stays); never one with volumes."""
    if not state.exists:
        return Plan()
    if not state.active:
        return Plan(steps=(Step(Action.START_POOL, "start it to count its volumes: a pool is "
                                                   "never removed with its volumes"),),
                    note="then stop-pool and undefine-pool if it holds no volumes")
    if state.volumes is None:
        return Plan(failure=f"storage pool '{state.name}': its volumes could not be counted, "
                            "so it is not removed")
    if state.volumes:
        path = state.saved.path if state.saved else None
        return Plan(terminal=True, failure=(
            f"storage pool '{state.name}' holds {state.volumes} volume(s)"
            f"{f' in {path}' if path else ''}: it stays defined and active (a pool is never "
            "deleted with its volumes)"))
    folder = state.saved.path if state.saved and state.saved.path else "its folder"
    steps = [Step(Action.STOP_POOL, f"{reason} (the pool holds no volume)")]
    if state.persistent:
        steps.append(Step(Action.UNDEFINE_POOL, f"{reason}; {folder} stays"))
    return Plan(steps=tuple(steps))
