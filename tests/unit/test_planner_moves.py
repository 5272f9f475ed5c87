"""Moves carry their volumes (planner/moves.py through plan_placement): what was observed
of a VM's storage on the source and the target in, the exact steps (each with the host it
runs on, and where a copy goes) or why nothing may run out."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from controller.domainxml import MANAGED_NS, parse_domain
from controller.model import (
    ABSENT_DOMAIN,
    Action,
    Backing,
    CloudInit,
    Disk,
    ImageSpec,
    MoveStrategy,
    Observed,
    PoolInfo,
    Power,
    VMSpec,
    VolumeInfo,
)
from controller.planner import Copy, Situation, plan_placement
from controller.planner.moves import MoveView
from controller.planner.seed import domain_uuid, wanted_seed
from controller.planner.storage import StorageView, plan_storage

UUID = "c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
MIB = 1024**2
SHA = "e3f0f4fcf54bbb5635a2f8e5bc15c5805539818c2c5c9ba92670a0dd5445c250"
IMAGE = ImageSpec("debian", "images.yaml", "http://127.0.0.1/debian.qcow2", SHA)
DIR = "/var/lib/libvirt/images"
BASE_PATH = f"{DIR}/{IMAGE.volume}"


def vol(name: str, *, backing: str | None = None, partial: bool = False, pool: str = "default",
        fmt: str = "qcow2", capacity: int = 8 * MIB) -> VolumeInfo:
    return VolumeInfo(name=name, pool=pool, path=f"{DIR}/{name}", key="k", capacity=capacity,
                      allocation=0, format=fmt,
                      backing=Backing(backing, "qcow2") if backing else None, mode=0o600,
                      partial=partial)


BASE = vol(IMAGE.volume)


def pool(kind: str = "dir", source: str | None = None, name: str = "default") -> PoolInfo:
    return PoolInfo(name=name, type=kind, path=DIR, source=source, active=True,
                    autostart=True, persistent=True, capacity=0, allocation=0, available=0)


def disk(**fields: object) -> Disk:
    base: dict[str, object] = {"source": "", "target": "vda", "volume": "vm-root",
                               "pool": "default"}
    base.update(fields)
    return Disk(**base)  # type: ignore[arg-type]


def spec(*disks: Disk, **fields: object) -> VMSpec:
    base: dict[str, object] = {"name": "vm", "source": "vm.yaml", "memory_kib": 65536,
                               "current_memory_kib": 65536, "vcpus": 1, "stop_timeout": 0,
                               "host": "kvm-2", "disks": disks or (disk(image="debian"),)}
    base.update(fields)
    return VMSpec(**base)  # type: ignore[arg-type]


def xml(*, volumes: tuple[str, ...] = ("vm-root",), seed: str | None = None,
        owner: str = "kvm-1") -> str:
    disks = "".join(
        f"<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source pool='default' volume='{name}'/><target dev='vd{'abcd'[i]}' bus='virtio'/>"
        "</disk>" for i, name in enumerate(volumes))
    if seed:
        disks += ("<disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>"
                  f"<source pool='default' volume='{seed}'/><target dev='hdc' bus='ide'/>"
                  "<readonly/></disk>")
    return (f"<domain type='kvm'><name>vm</name><uuid>{UUID}</uuid><metadata>"
            f'<reconcile:managed xmlns:reconcile="{MANAGED_NS}" host="{owner}" '
            'source="vm.yaml"/></metadata><memory unit="KiB">65536</memory>'
            '<currentMemory unit="KiB">65536</currentMemory><vcpu>1</vcpu>'
            "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
            f"<devices>{disks}</devices></domain>")


def seen(power: Power, saved: str, *, autostart: bool = False) -> Observed:
    config = parse_domain(saved)
    return Observed("vm", exists=True, power=power, persistent=True, autostart=autostart,
                    saved=config, live=config if power.active else None, saved_xml=saved)


RUNNING, STOPPED = Power.RUNNING, Power.STOPPED
OVERLAY = vol("vm-root", backing=BASE_PATH)
RAW = vol("vm-root", fmt="raw")


def move_view(*, source: dict[str, VolumeInfo | None] | None = None,
              target: dict[str, VolumeInfo | None] | None = None,
              base_there: VolumeInfo | None = BASE, base_here: VolumeInfo | None = BASE,
              pools: tuple[PoolInfo | None, PoolInfo | None] = (pool(), pool()),
              seeds: frozenset[str] = frozenset(), planned: bool = False) -> MoveView:
    here = {("default", name): info
            for name, info in (source if source is not None else {"vm-root": OVERLAY}).items()}
    there = {key: None for key in here} | {("default", name): info
                                           for name, info in (target or {}).items()}
    return MoveView(
        target=StorageView(volumes=dict(there), images={"debian": IMAGE},
                           image_volumes={"debian": base_there}, seeds=seeds,
                           planned_imports=frozenset({"debian"}) if planned else frozenset()),
        source_volumes=here, target_volumes=there,
        source_pools={"default": pools[0]}, target_pools={"default": pools[1]},
        backings={BASE_PATH: (base_here, base_there)},
        image_volumes=frozenset({IMAGE.volume}),
        planned_imports=frozenset({IMAGE.volume}) if planned else frozenset())


Step3 = tuple[str, str | None, str | None]  # action, host, to_host


class Case(NamedTuple):
    id: str
    spec: VMSpec
    source: Observed
    view: MoveView
    steps: list[Step3]
    failure: str | None = None
    terminal: bool = False
    here: Observed = ABSENT_DOMAIN


COLD: list[Step3] = [("autostart", "kvm-1", None), ("destroy", "kvm-1", None),
        ("copy-volume", "kvm-1", "kvm-2"), ("define", "kvm-2", None)]
SOURCE_RUNNING = seen(RUNNING, xml(), autostart=True)
SOURCE_STOPPED = seen(STOPPED, xml())
MOVE = "move kvm-1 → kvm-2: "

CASES = [
    Case("cold: an overlay whose image the target holds is copied after the stop",
         spec(), SOURCE_RUNNING, move_view(), COLD),
    Case("cold: a raw volume", spec(disk(size=8 * MIB, format="raw")), SOURCE_RUNNING,
         move_view(source={"vm-root": RAW}), COLD),
    Case("cold: an interrupted copy on the target is copied again", spec(), SOURCE_RUNNING,
         move_view(target={"vm-root": vol("vm-root", backing=BASE_PATH, partial=True)}),
         COLD),
    Case("cold: a stopped VM, its volume complete on the target already: compared",
         spec(), SOURCE_STOPPED, move_view(target={"vm-root": OVERLAY}),
         [("copy-volume", "kvm-1", "kvm-2"), ("define", "kvm-2", None)]),
    Case("cold: a running VM, a volume of its name on the target: refused before the stop",
         spec(), SOURCE_RUNNING, move_view(target={"vm-root": OVERLAY}), [],
         failure=MOVE + "volume default/vm-root already exists on kvm-2 (an old copy kept "
                        "by an earlier move?): a move never overwrites it; delete it there, "
                        "or stop the VM to have the two compared"),
    Case("a shared pool with the same source: nothing is copied", spec(), SOURCE_RUNNING,
         move_view(pools=(pool("netfs", "nas:/vms"), pool("netfs", "nas:/vms")),
                   target={"vm-root": OVERLAY}),
         [("autostart", "kvm-1", None), ("destroy", "kvm-1", None), ("define", "kvm-2", None)]),
    Case("a shared pool type with another source is not shared: copied", spec(),
         SOURCE_RUNNING,
         move_view(pools=(pool("netfs", "nas:/vms"), pool("netfs", "nas2:/vms"))), COLD),
    Case("a shared pool the target does not see the volume in", spec(), SOURCE_RUNNING,
         move_view(pools=(pool("netfs", "nas:/vms"), pool("netfs", "nas:/vms"))), [],
         failure=MOVE + "volume default/vm-root is on shared pool default, but kvm-2 does "
                        "not see it: refresh the pool there"),
    Case("an overlay whose image the target lacks: the move waits", spec(), SOURCE_RUNNING,
         move_view(base_there=None), [],
         failure=MOVE + f"volume default/vm-root is an overlay on image volume default/"
                        f"{IMAGE.volume}, which kvm-2 does not hold complete at {BASE_PATH}; "
                        "copying the overlay before it is there would break its backing "
                        "chain: the move waits for the image's import"),
    Case("an overlay whose image is only partly imported on the target: waits", spec(),
         SOURCE_RUNNING, move_view(base_there=vol(IMAGE.volume, partial=True)), [],
         failure=MOVE + f"volume default/vm-root is an overlay on image volume default/"
                        f"{IMAGE.volume}, which kvm-2 does not hold complete at {BASE_PATH}; "
                        "copying the overlay before it is there would break its backing "
                        "chain: the move waits for the image's import"),
    Case("a dry run: the image this pass imports on the target first", spec(),
         SOURCE_RUNNING, move_view(base_there=None, planned=True), COLD),
    Case("an overlay on a file that is no Image's volume: refused", spec(), SOURCE_RUNNING,
         move_view(base_here=vol("handmade.qcow2")), [], terminal=True,
         failure=MOVE + f"volume default/vm-root is an overlay on {BASE_PATH}, which is no "
                        "Image's volume: a move carries an overlay only onto its image "
                        "(flatten it into a copy first)"),
    Case("the target has another volume at the backing path: refused", spec(),
         SOURCE_RUNNING, move_view(base_there=vol("other.qcow2")), [], terminal=True,
         failure=MOVE + f"volume default/vm-root is an overlay on {BASE_PATH}, which on "
                        "kvm-2 is volume default/other.qcow2, not image volume default/"
                        f"{IMAGE.volume}: copying it would give it another backing file"),
    Case("a volume neither host has is created on the target before the stop",
         spec(disk(), disk(target="vdb", volume="vm-data", size=16 * MIB)), SOURCE_RUNNING,
         move_view(source={"vm-root": OVERLAY, "vm-data": None}),
         [("create-volume", "kvm-2", None), *COLD]),
    Case("a pool the target lacks (not default): refused",
         spec(disk(pool="fast", image=None, size=8 * MIB)), SOURCE_RUNNING,
         MoveView(target=StorageView(volumes={}, images={}, image_volumes={}),
                  source_volumes={("fast", "vm-root"): vol("vm-root", pool="fast")},
                  target_volumes={("fast", "vm-root"): None},
                  source_pools={"fast": pool(name="fast")}, target_pools={"fast": None},
                  backings={}),
         [], failure=MOVE + "storage pool 'fast' does not exist on kvm-2; volume "
                            "fast/vm-root cannot move there"),
    Case("the default pool missing on the target is made there: copied", spec(),
         SOURCE_RUNNING, move_view(pools=(pool(), None)), COLD),
    Case("finish: the target has the VM, the source is stopped: only the undefine", spec(),
         SOURCE_STOPPED, move_view(target={"vm-root": OVERLAY}),
         [("undefine", "kvm-1", None), ("start", None, None)],
         here=seen(STOPPED, xml(owner="kvm-2"))),
    Case("live: the running guest's volume is copied during the migration",
         spec(move_strategy=MoveStrategy.LIVE), SOURCE_RUNNING, move_view(),
         [("migrate", "kvm-1", "kvm-2")]),
    Case("live: a volume of its name on the target: refused",
         spec(move_strategy=MoveStrategy.LIVE), SOURCE_RUNNING,
         move_view(target={"vm-root": OVERLAY}), [],
         failure=MOVE + "volume default/vm-root already exists on kvm-2 (an old copy kept "
                        "by an earlier move?): a move never overwrites it; delete it there, "
                        "or stop the VM to have the two compared"),
    Case("live: a volume of the manifest's the guest does not run on is copied first",
         spec(disk(), disk(target="vdb", volume="vm-data", size=8 * MIB),
              move_strategy=MoveStrategy.LIVE),
         SOURCE_RUNNING, move_view(source={"vm-root": OVERLAY, "vm-data": RAW}),
         [("copy-volume", "kvm-1", "kvm-2"), ("migrate", "kvm-1", "kvm-2")]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_plan_move_storage(case: Case) -> None:
    situation = Situation(host="kvm-2", here=case.here, copies=(Copy("kvm-1", case.source),),
                          move_storage=case.view)
    result = plan_placement(case.spec, situation)
    assert [(step.action.value, step.host, step.to_host) for step in result.steps] == case.steps
    assert (result.failure, result.terminal) == (case.failure, case.terminal)
    if not case.failure and case.here is ABSENT_DOMAIN:
        assert [(step.action.value, step.host) for step in result.after] == (
            [] if result.steps[-1].action is Action.MIGRATE else [("undefine", "kvm-1")])


def _situation(view: MoveView, source: Observed = SOURCE_RUNNING) -> Situation:
    return Situation(host="kvm-2", here=ABSENT_DOMAIN, copies=(Copy("kvm-1", source),),
                     move_storage=view)


def test_a_copy_names_the_volume_both_hosts_and_its_shape_and_the_source_keeps_it() -> None:
    result = plan_placement(spec(), _situation(move_view()))
    (copy,) = [step for step in result.steps if step.action is Action.COPY_VOLUME]
    assert (copy.host, copy.to_host) == ("kvm-1", "kvm-2")
    assert copy.volume is not None
    assert (copy.volume.pool, copy.volume.name, copy.volume.backing) == (
        "default", "vm-root", Backing(BASE_PATH, "qcow2"))
    assert copy.reason == (f"{MOVE}default/vm-root, qcow2, 8 MiB, an overlay on {BASE_PATH} "
                           "(its own clusters only), copied and verified")
    assert result.note == "the volumes on kvm-1 are kept: default/vm-root"
    (define,) = [step for step in result.steps if step.action is Action.DEFINE]
    assert parse_domain(define.xml or "").owner == "kvm-2"


def test_a_cloud_init_seed_is_made_on_the_target_never_copied() -> None:
    cloudy = spec(cloud_init=CloudInit(user_data="#cloud-config\n"))
    want = wanted_seed(cloudy, domain_uuid(cloudy, SOURCE_RUNNING))
    source = seen(RUNNING, xml(seed=want.volume), autostart=True)
    result = plan_placement(cloudy, _situation(move_view(), source))
    assert [(step.action.value, step.host) for step in result.steps] == [
        ("create-seed", "kvm-2"), ("autostart", "kvm-1"), ("destroy", "kvm-1"),
        ("copy-volume", "kvm-1"), ("define", "kvm-2")]
    assert result.steps[0].seed == want
    arriving = parse_domain(result.steps[-1].xml or "")
    assert arriving.seed == ("default", want.volume) and arriving.uuid == UUID
    # already made there (an interrupted move): not made again
    again = plan_placement(cloudy, _situation(move_view(seeds=frozenset({want.volume})),
                                              source))
    assert Action.CREATE_SEED not in {step.action for step in again.steps}


def test_the_arriving_definition_attaches_the_manifests_seed() -> None:
    """A cloud-init change made with the move: the target gets the new seed."""
    cloudy = spec(cloud_init=CloudInit(user_data="#cloud-config\nnew: 1\n"))
    want = wanted_seed(cloudy, UUID)
    source = seen(STOPPED, xml(seed="vm.cidata-000000000000.iso"))
    result = plan_placement(cloudy, _situation(move_view(), source))
    arriving = parse_domain(result.steps[-1].xml or "")
    assert arriving.seed == ("default", want.volume)


def test_a_live_move_takes_the_disks_in_the_migration() -> None:
    live = spec(move_strategy=MoveStrategy.LIVE, cloud_init=CloudInit(user_data="#x\n"))
    want = wanted_seed(live, UUID)
    source = seen(RUNNING, xml(seed=want.volume))
    result = plan_placement(live, _situation(move_view(), source))
    assert [step.action for step in result.steps] == [Action.CREATE_SEED, Action.MIGRATE]
    migrate = result.steps[-1]
    assert migrate.reason == "move kvm-1 → kvm-2 (live, its disks copied)"
    (target,) = migrate.volumes
    assert (target.pool, target.name, target.format, target.capacity, target.backing,
            target.target) == ("default", "vm-root", "qcow2", 8 * MIB,
                               Backing(BASE_PATH, "qcow2"), "vda")
    assert result.note == "the volumes on kvm-1 are kept: default/vm-root"


def test_a_live_move_of_a_guest_on_an_older_seed_is_refused() -> None:
    live = spec(move_strategy=MoveStrategy.LIVE, cloud_init=CloudInit(user_data="#x\n"))
    want = wanted_seed(live, UUID)
    source = seen(RUNNING, xml(seed="vm.cidata-000000000000.iso"))
    result = plan_placement(live, _situation(move_view(), source))
    assert not result.steps
    assert result.failure == (
        f"{MOVE}the running guest's cloud-init seed vm.cidata-000000000000.iso is not the "
        f"one the manifest makes now ({want.volume}); seeds are made from the manifest, so "
        "kvm-2 cannot have the guest's: move it cold, or restart it first")


def test_finishing_a_move_copies_what_the_target_still_lacks_first() -> None:
    result = plan_placement(spec(), Situation(
        host="kvm-2", here=seen(STOPPED, xml(owner="kvm-2")),
        copies=(Copy("kvm-1", SOURCE_STOPPED),), move_storage=move_view()))
    assert [(step.action.value, step.host) for step in result.steps] == [
        ("copy-volume", "kvm-1"), ("undefine", "kvm-1"), ("start", None)]


def test_a_partial_volume_a_running_domain_has_is_finished_never_made_again() -> None:
    """A live move killed after the switch-over: the guest runs on its copy, whose marker
    was not cleared yet. Deleting it would take the running guest's disk."""
    view = StorageView(volumes={("default", "vm-root"): vol("vm-root", partial=True)},
                       images={"debian": IMAGE}, image_volumes={"debian": BASE},
                       in_use=frozenset({("default", "vm-root")}))
    result = plan_storage(spec(), view)
    (step,) = result.steps
    assert step.action is Action.CREATE_VOLUME and step.volume is not None
    assert step.volume.finish and not result.created
    assert step.reason == ("default/vm-root: the running domain has it (a live move copied "
                           "it): its partial marker is cleared")
    unused = plan_storage(spec(), StorageView(volumes=view.volumes, images=view.images,
                                              image_volumes=view.image_volumes))
    assert unused.steps[0].volume is not None and not unused.steps[0].volume.finish
