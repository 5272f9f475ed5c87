"""The soak's chaos schedule: a seeded, reproducible list of faults in time. Pure.

`make_schedule` draws each fault's kind by weight, its target VM and its details from
one `random.Random(seed)`, so a seed names one schedule exactly; faults come a random
exponential gap apart (mean `mean_gap` seconds). A manifest made invalid or removed is
restored by an "edit" to a valid one 5-30 s later, and every valid edit changes what
the VM wants (an edit that changes nothing would converge in no time and flatter the
figures). Whether a fault finds its target in a state it can act on (a destroy of a
VM that is not running) is up to the run: it then counts the fault as skipped.
Called by tests/soak/run.py; tested in tests/soak/test_soak_logic.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

#: Kinds of fault → weight. What each does is in run.py's Chaos.
WEIGHTS: dict[str, int] = {
    "edit": 30,              # a valid manifest edit: state and/or memory
    "invalid": 10,           # the manifest made invalid (YAML, schema); restored later
    "remove": 4,             # the manifest file removed (an orphan: pruned); restored later
    "destroy": 14,           # virsh destroy behind the service's back
    "undefine": 7,           # undefine behind its back (a running VM stays, transient)
    "redefine": 7,           # a changed definition (memory) behind its back
    "once": 10,              # a concurrent `reconcile --once` pass
    "kill-service": 5,       # kill -9 the service, then start it again
    "restart-libvirtd": 4,   # SIGTERM libvirtd, then start it again
    "kill-libvirtd": 2,      # SIGKILL libvirtd, then start it again
    "reload": 3,             # SIGHUP: a full resync
}
#: Kinds that act on one VM (and so give a time-to-converge sample).
VM_KINDS = frozenset({"edit", "invalid", "remove", "destroy", "undefine", "redefine"})
STATES = ("running", "stopped", "absent")
STATE_WEIGHTS = (6, 3, 1)
MEMORIES = (64, 80, 96)  # MiB: what manifests ask for
FOREIGN_MEMORY = 72  # MiB: what a redefinition behind the back sets (no manifest asks it)
INVALID_VARIANTS = 4  # see run.py's invalid_manifest


@dataclass(frozen=True)
class Want:
    """What a valid manifest of one VM says."""

    state: str
    memory: int  # MiB


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the chaos began
    kind: str
    vm: str | None = None
    want: Want | None = None  # for "edit": the new manifest
    variant: int = 0  # for "invalid": which invalid document
    down: float = 0.0  # for restarts: how long it stays down (seconds)
    restore: bool = False  # an edit that undoes an "invalid" or "remove"


def initial_wants(*, seed: int, names: Sequence[str]) -> dict[str, Want]:
    """What every VM's manifest says when the soak begins (most run, some are stopped)."""
    rng = random.Random(f"{seed}-initial")
    return {name: Want(rng.choices(STATES[:2], weights=(2, 1))[0], rng.choice(MEMORIES))
            for name in names}


def _new_want(rng: random.Random, old: Want) -> Want:
    while True:
        want = Want(rng.choices(STATES, weights=STATE_WEIGHTS)[0], rng.choice(MEMORIES))
        if want != old and not (want.state == old.state == "absent"):
            return want


def make_schedule(*, seed: int, seconds: float, names: Sequence[str], mean_gap: float,
                  wants: dict[str, Want]) -> list[Fault]:
    """The faults of a soak of `seconds`, sorted by time; see the module docstring."""
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[kind] for kind in kinds]
    current = dict(wants)
    broken: dict[str, float] = {}  # VM → when its restore is due
    faults: list[Fault] = []
    now = 0.0
    while True:
        now += rng.expovariate(1.0 / mean_gap)
        if now >= seconds:
            break
        for vm, due in sorted(broken.items(), key=lambda item: item[1]):
            if due <= now:
                want = _new_want(rng, current[vm])
                current[vm] = want
                faults.append(Fault(due, "edit", vm, want=want, restore=True))
                del broken[vm]
        kind = rng.choices(kinds, weights=weights)[0]
        if kind not in VM_KINDS:
            down = rng.uniform(0.0, 5.0) if kind != "kill-service" else rng.uniform(0.0, 3.0)
            faults.append(Fault(now, kind, down=down))
            continue
        vm = rng.choice([name for name in names if name not in broken] or list(names))
        if kind == "edit":
            want = _new_want(rng, current[vm])
            current[vm] = want
            faults.append(Fault(now, kind, vm, want=want))
        elif kind in ("invalid", "remove"):
            if vm in broken:
                continue
            broken[vm] = now + rng.uniform(5.0, 30.0)
            faults.append(Fault(now, kind, vm, variant=rng.randrange(INVALID_VARIANTS)))
        else:
            faults.append(Fault(now, kind, vm))
    # What is still broken at the end is restored by the run's final edit, not here.
    faults.sort(key=lambda fault: fault.at)
    return faults
