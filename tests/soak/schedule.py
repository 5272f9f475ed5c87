"""The soak's chaos schedule: a seeded, reproducible list of faults in time. Pure.

`make_schedule` draws each fault's kind by weight, its target VM and its details from
one `random.Random(seed)`, so a seed names one schedule exactly; faults come a random
exponential gap apart (mean `mean_gap` seconds). A manifest made invalid or removed is
restored by an "edit" to a valid one 5-30 s later, and every valid edit changes what
the VM wants (an edit that changes nothing would converge in no time and flatter the
figures). Whether a fault finds its target in a state it can act on (a destroy of a
VM that is not running) is up to the run: it then counts the fault as skipped.
Storage (the VMs of `storage`, see STORAGE_EVERY): their Want also says the size and
generation of a data volume and the version of their cloud-init user data, which only
the storage faults change (a size never shrinks). The storage faults are an edit that
causes one storage step (a new image version: import-image; a new data volume
generation: create-volume; a larger size: grow-volume; new user data: create-seed),
then a kill -9 of `target` (the service, or a concurrent `--once` started for it) at
that step's start line (`delay` 0) or `delay` seconds after the edit; an upload
during which libvirtd is stopped (SIGKILL or SIGTERM); and one full pool, cleared
`down` seconds later.
Called by tests/soak/run.py; tested in tests/soak/test_soak_logic.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

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
    "kill-import": 3,        # a new image version, a kill -9 during its import
    "kill-volume": 3,        # a new data volume (generation), a kill -9 during its creation
    "kill-grow": 3,          # a larger data volume, a kill -9 during the grow
    "kill-seed": 3,          # new user data, a kill -9 during the seed's upload
    "upload-libvirtd": 2,    # a new image version, libvirtd stopped during its upload
}
#: Kinds with a kill -9 of a process at a storage step: → the step's action.
KILL_STEPS = {"kill-import": "import-image", "kill-volume": "create-volume",
              "kill-grow": "grow-volume", "kill-seed": "create-seed"}
#: Every how many VMs one uses storage (VM 0, STORAGE_EVERY, 2 * STORAGE_EVERY, ...).
STORAGE_EVERY = 5
DATA_MIB = 8  # the data volume's first size; a grow adds GROW_MIB
GROW_MIB = 8
#: Kinds that act on one VM (and so give a time-to-converge sample).
VM_KINDS = frozenset({"edit", "invalid", "remove", "destroy", "undefine", "redefine",
                      "kill-volume", "kill-grow", "kill-seed"})
#: Of those, the kinds only a storage VM can take.
STORAGE_VM_KINDS = frozenset({"kill-volume", "kill-grow", "kill-seed"})
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
    disk: int = 0  # MiB of the data volume; 0: a VM without storage
    generation: int = 0  # of the data volume: its name is <vm>-d<generation>
    seed: int = 0  # version of the cloud-init user data

    @property
    def storage(self) -> bool:
        return self.disk > 0


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the chaos began
    kind: str
    vm: str | None = None
    want: Want | None = None  # for "edit": the new manifest
    variant: int = 0  # for "invalid": which invalid document
    down: float = 0.0  # for restarts: how long it stays down (seconds)
    restore: bool = False  # an edit that undoes an "invalid" or "remove"
    target: str = ""  # for the kill-* kinds: "service" or "once"
    delay: float = 0.0  # for the kill-* kinds: 0: at the step's start line, else seconds
    image: int = 0  # for kill-import, upload-libvirtd: the new image version
    sigkill: bool = False  # for upload-libvirtd: SIGKILL (else SIGTERM)


def storage_names(names: Sequence[str]) -> list[str]:
    """The VMs that use storage: every STORAGE_EVERY-th."""
    return [name for index, name in enumerate(names) if index % STORAGE_EVERY == 0]


def initial_wants(*, seed: int, names: Sequence[str]) -> dict[str, Want]:
    """What every VM's manifest says when the soak begins (most run, some are stopped)."""
    rng = random.Random(f"{seed}-initial")
    storage = set(storage_names(names))
    return {name: Want(rng.choices(STATES[:2], weights=(2, 1))[0], rng.choice(MEMORIES),
                       disk=DATA_MIB if name in storage else 0)
            for name in names}


def _new_want(rng: random.Random, old: Want) -> Want:
    while True:
        want = replace(old, state=rng.choices(STATES, weights=STATE_WEIGHTS)[0],
                       memory=rng.choice(MEMORIES))
        if want != old and not (want.state == old.state == "absent"):
            return want


def storage_edit(rng: random.Random, kind: str, old: Want) -> Want:
    """The edit of a kill-volume, kill-grow or kill-seed fault: one storage change, and a
    state in which the VM exists (else no storage step would run)."""
    state = old.state if old.state != "absent" else rng.choice(STATES[:2])
    if kind == "kill-volume":
        return replace(old, state=state, generation=old.generation + 1)
    if kind == "kill-grow":
        return replace(old, state=state, disk=old.disk + GROW_MIB)
    assert kind == "kill-seed", kind
    return replace(old, state=state, seed=old.seed + 1)


def make_schedule(*, seed: int, seconds: float, names: Sequence[str], mean_gap: float,
                  wants: dict[str, Want]) -> list[Fault]:
    """The faults of a soak of `seconds`, sorted by time; see the module docstring."""
    rng = random.Random(seed)
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[kind] for kind in kinds]
    current = dict(wants)
    storage = [name for name in names if current[name].storage]
    broken: dict[str, float] = {}  # VM → when its restore is due
    faults: list[Fault] = []
    image = 0
    if storage:  # one full pool, in the first half, cleared 20-60 s later
        faults.append(Fault(rng.uniform(0.15, 0.5) * seconds, "full-pool",
                            down=rng.uniform(20.0, 60.0)))
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
        if kind in ("kill-import", "upload-libvirtd"):
            if not storage:
                continue
            image += 1
            faults.append(Fault(now, kind, image=image, down=rng.uniform(0.0, 5.0),
                                target=rng.choice(("service", "once")),
                                delay=rng.choice((0.0, rng.uniform(0.0, 2.0))),
                                sigkill=rng.random() < 0.5))
            continue
        if kind in STORAGE_VM_KINDS:
            choices = [name for name in storage if name not in broken]
            if not choices:
                continue
            vm = rng.choice(choices)
            want = storage_edit(rng, kind, current[vm])
            current[vm] = want
            faults.append(Fault(now, kind, vm, want=want, target=rng.choice(("service", "once")),
                                delay=rng.choice((0.0, rng.uniform(0.0, 2.0))),
                                down=rng.uniform(0.0, 3.0)))
            continue
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
