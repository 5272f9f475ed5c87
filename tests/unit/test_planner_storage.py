"""plan_storage and plan_image: what was observed of a VM's volumes and images in, exact
storage steps (or why nothing may run) out."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from controller.model import (
    ABSENT_DOMAIN,
    Action,
    Backing,
    DesiredState,
    Disk,
    ImageSpec,
    VMSpec,
    VolumeInfo,
)
from controller.planner.images import plan_image
from controller.planner.placement import Situation, plan_placement
from controller.planner.storage import StorageView, delete_steps, plan_storage

GIB = 1024**3
SHA = "e3f0f4fcf54bbb5635a2f8e5bc15c5805539818c2c5c9ba92670a0dd5445c250"
IMAGE = ImageSpec("debian", "images.yaml", "http://127.0.0.1/debian.qcow2", SHA, pool="pool")
BASE_PATH = f"/var/lib/libvirt/images/pool/{IMAGE.volume}"


def volume(name: str, capacity: int, *, backing: str | None = None,
           partial: bool = False) -> VolumeInfo:
    return VolumeInfo(name=name, pool="pool", path=f"/var/lib/libvirt/images/pool/{name}",
                      key="k", capacity=capacity, allocation=0, format="qcow2",
                      backing=Backing(backing, "qcow2") if backing else None, mode=None,
                      partial=partial)


BASE = volume(IMAGE.volume, 2 * GIB)


def disk(target: str = "vda", **fields: object) -> Disk:
    base: dict[str, object] = {"source": "", "target": target, "volume": f"vm-{target}",
                               "pool": "pool"}
    base.update(fields)
    return Disk(**base)  # type: ignore[arg-type]


def spec(*disks: Disk, **fields: object) -> VMSpec:
    return VMSpec(name="vm", source="vm.yaml", memory_kib=65536, current_memory_kib=65536,
                  vcpus=1, disks=disks, **fields)  # type: ignore[arg-type]


def view(volumes: dict[str, VolumeInfo | None], *, base: VolumeInfo | None = BASE,
         live: tuple[str, ...] = (), planned: bool = False) -> StorageView:
    return StorageView(volumes={("pool", name): info for name, info in volumes.items()},
                       images={"debian": IMAGE}, image_volumes={"debian": base},
                       live_targets=frozenset(live),
                       planned_imports=frozenset({"debian"}) if planned else frozenset())


class Case(NamedTuple):
    id: str
    spec: VMSpec
    view: StorageView
    steps: list[tuple[str, str]]
    failure: str | None = None
    terminal: bool = False


CASES = [
    Case("empty volume", spec(disk(size=GIB)), view({"vm-vda": None}),
         [("create-volume", "pool/vm-vda: 1 GiB, empty")]),
    Case("overlay on an image, its size", spec(disk(image="debian")), view({"vm-vda": None}),
         [("create-volume", "pool/vm-vda: 2 GiB, an overlay on image debian")]),
    Case("overlay, larger", spec(disk(image="debian", size=20 * GIB)), view({"vm-vda": None}),
         [("create-volume", "pool/vm-vda: 20 GiB, an overlay on image debian")]),
    Case("a full copy", spec(disk(image="debian", copy=True, format="raw")),
         view({"vm-vda": None}),
         [("create-volume", "pool/vm-vda: 2 GiB, a copy of image debian")]),
    Case("an interrupted creation is made again", spec(disk(size=GIB)),
         view({"vm-vda": volume("vm-vda", GIB, partial=True)}),
         [("create-volume", "pool/vm-vda: 1 GiB, empty (its creation was interrupted: made "
                            "again)")]),
    Case("the image is not imported yet", spec(disk(image="debian")), view({"vm-vda": None},
                                                                           base=None), [],
         failure="image debian is not imported into pool pool on this host yet; volume "
                 "pool/vm-vda waits for it"),
    Case("a partial image is not used", spec(disk(image="debian")),
         view({"vm-vda": None}, base=volume(IMAGE.volume, 2 * GIB, partial=True)), [],
         failure="image debian is not imported into pool pool on this host yet; volume "
                 "pool/vm-vda waits for it"),
    Case("a dry run plans on an image it imports first",
         spec(disk(image="debian", size=GIB * 3)),
         view({"vm-vda": None}, base=None, planned=True),
         [("create-volume", "pool/vm-vda: 3 GiB, an overlay on image debian once it is "
                            "imported")]),
    Case("smaller than its image", spec(disk(image="debian", size=GIB)),
         view({"vm-vda": None}), [], terminal=True,
         failure="volume pool/vm-vda: size 1 GiB is smaller than image debian (2 GiB)"),
    Case("unchanged", spec(disk(image="debian", size=2 * GIB)),
         view({"vm-vda": volume("vm-vda", 2 * GIB, backing=BASE_PATH)}), []),
    Case("grow offline", spec(disk(size=3 * GIB)), view({"vm-vda": volume("vm-vda", GIB)}),
         [("grow-volume", "pool/vm-vda 1 GiB → 3 GiB (offline)")]),
    Case("grow live", spec(disk(size=3 * GIB)), view({"vm-vda": volume("vm-vda", GIB)},
                                                      live=("vda",)),
         [("grow-volume", "pool/vm-vda 1 GiB → 3 GiB (live)")]),
    Case("a shrink is refused and nothing runs", spec(disk("vda", size=3 * GIB),
                                                      disk("vdb", size=GIB)),
         view({"vm-vda": None, "vm-vdb": volume("vm-vdb", 2 * GIB)}), [], terminal=True,
         failure="volume pool/vm-vdb is 2 GiB; size 1 GiB would shrink it: disks grow, never "
                 "shrink"),
    Case("creates first, then grows", spec(disk("vda", size=GIB), disk("vdb", size=2 * GIB)),
         view({"vm-vda": volume("vm-vda", GIB // 2), "vm-vdb": None}),
         [("create-volume", "pool/vm-vdb: 2 GiB, empty"),
          ("grow-volume", "pool/vm-vda 512 MiB → 1 GiB (offline)")]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_plan_storage(case: Case) -> None:
    result = plan_storage(case.spec, case.view)
    assert [(step.action.value, step.reason) for step in result.steps] == case.steps
    assert (result.failure, result.terminal) == (case.failure, case.terminal)


def test_what_a_create_asks_for() -> None:
    result = plan_storage(spec(disk(image="debian")), view({"vm-vda": None}))
    (step,) = result.steps
    assert step.volume is not None
    assert (step.volume.pool, step.volume.name, step.volume.format, step.volume.capacity,
            step.volume.backing) == ("pool", "vm-vda", "qcow2", 2 * GIB,
                                     Backing(BASE_PATH, "qcow2"))
    assert result.created == (("pool", "vm-vda"),)
    copy = plan_storage(spec(disk(image="debian", copy=True)), view({"vm-vda": None}))
    assert copy.steps[0].volume is not None
    assert copy.steps[0].volume.copy_of == ("pool", IMAGE.volume)


@pytest.mark.parametrize("existing, wanted, note", [
    (volume("vm-vda", 2 * GIB), disk(image="debian"),
     "volume pool/vm-vda is not an overlay on image debian: an existing volume is used as it "
     "is, never overwritten"),
    (volume("vm-vda", 2 * GIB, backing=BASE_PATH), disk(image="debian", copy=True),
     "volume pool/vm-vda is an overlay, not a copy of image debian: an existing volume is "
     "used as it is, never overwritten"),
    (volume("vm-vda", 2 * GIB, backing=BASE_PATH), disk(image="debian"), None),
])
def test_an_existing_volume_is_used_as_it_is(existing: VolumeInfo, wanted: Disk,
                                             note: str | None) -> None:
    the_view = view({"vm-vda": existing})
    result = plan_storage(spec(wanted), the_view)
    assert result.steps == () and result.failure is None
    assert result.notes == ((note,) if note else ())


def test_the_plan_of_a_new_vm_puts_storage_first_and_records_what_it_creates() -> None:
    situation = Situation(host="", here=ABSENT_DOMAIN,
                          storage=view({"vm-vda": None, "vm-vdb": None}))
    result = plan_placement(spec(disk("vda", image="debian"), disk("vdb", size=GIB)),
                            situation)
    assert [step.action for step in result.steps] == [
        Action.CREATE_VOLUME, Action.CREATE_VOLUME, Action.DEFINE, Action.START]
    from controller.domainxml import parse_domain

    defined = parse_domain(result.steps[2].xml or "")
    assert defined.created_volumes == (("pool", "vm-vda"), ("pool", "vm-vdb"))
    assert [d.where for d in defined.disks] == ["pool/vm-vda", "pool/vm-vdb"]


def test_a_failed_storage_plan_runs_nothing() -> None:
    situation = Situation(host="", here=ABSENT_DOMAIN, storage=view({"vm-vda": None},
                                                                   base=None))
    result = plan_placement(spec(disk(image="debian")), situation)
    assert result.steps == () and result.failure is not None


def test_state_absent_deletes_only_the_volumes_reconcile_made_and_marked_delete() -> None:
    gone = spec(disk("vda", on_remove="delete"), disk("vdb", on_remove="delete"),
                disk("vdc"), state=DesiredState.ABSENT)
    steps = delete_steps(gone, (("pool", "vm-vda"), ("pool", "vm-vdc")))
    assert [(step.action.value, step.reason) for step in steps] == [
        ("delete-volume", "pool/vm-vda: onRemove is delete")]


@pytest.mark.parametrize("have, steps", [
    (None, [("import-image", f"not in pool pool yet: {IMAGE.volume}")]),
    (volume(IMAGE.volume, GIB, partial=True),
     [("import-image", f"an interrupted import of pool/{IMAGE.volume}: imported again")]),
    (BASE, []),
])
def test_plan_image(have: VolumeInfo | None, steps: list[tuple[str, str]]) -> None:
    result = plan_image(IMAGE, have)
    assert [(step.action.value, step.reason) for step in result.steps] == steps
    assert all(step.image == IMAGE for step in result.steps)


def test_an_image_volume_is_named_by_its_content() -> None:
    assert IMAGE.volume == f"debian.sha256-{SHA[:12]}.qcow2"
