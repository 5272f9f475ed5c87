"""The planner's rules for managed domains no manifest names, and for a define that would
take another domain's disk: tables in, verdicts and plans out."""

from __future__ import annotations

import pytest

from controller.domainxml import MANAGED_NS, parse_domain
from controller.model import ABSENT_DOMAIN, Action, Disk, Observed, Plan, Power, Step, VMSpec
from controller.planner.disks import disk_clash, disks_to_check
from controller.planner.orphans import (
    ORPHAN_REASON,
    Manifests,
    PruneVerdict,
    left_as_is,
    plan_orphan,
    prune_verdict,
)

IMAGES = "/var/lib/libvirt/images"


def load(*, complete: bool = True, problem: str | None = None, files: tuple[str, ...] = (),
         names: tuple[str, ...] = (), sources: dict[str, str] | None = None) -> Manifests:
    return Manifests(complete=complete, problem=problem, invalid_files=frozenset(files),
                     invalid_names=frozenset(names), invalid_sources=sources or {})


@pytest.mark.parametrize("name, mark, manifests, why", [
    ("a", "a.yaml", load(files=("a.yaml",)), "left as it is: its manifest a.yaml is invalid"),
    ("a", "web/a.yaml", load(files=("web/a.yaml",)),
     "left as it is: its manifest web/a.yaml is invalid"),
    ("a", None, load(names=("a",), sources={"a": "x.yaml"}),
     "left as it is: its manifest x.yaml is invalid"),
    ("a", "old.yaml", load(names=("a",)), "left as it is: its manifest is invalid"),
    ("a", "a.yaml", load(files=("b.yaml",)), None),  # another file is invalid: an orphan
    ("a", None, load(), None),  # no mark of a file (older reconcile): an orphan
])
def test_left_as_is(name: str, mark: str | None, manifests: Manifests, why: str | None) -> None:
    assert left_as_is(name, mark, manifests) == why


@pytest.mark.parametrize("manifests, orphans, limit, verdict", [
    (load(), 2, 5, PruneVerdict(True)),
    (load(), 5, 5, PruneVerdict(True)),
    (load(), 6, 5, PruneVerdict(False, "6 orphans exceed --max-prune 5", fails=True)),
    (load(), 1, 0, PruneVerdict(False, "1 orphans exceed --max-prune 0", fails=True)),
    (load(complete=False, problem="2 invalid manifest(s)"), 1, 5,
     PruneVerdict(False, "2 invalid manifest(s)")),
    (load(complete=False, problem="manifest directory /m holds no manifests"), 9, 5,
     PruneVerdict(False, "manifest directory /m holds no manifests")),
])
def test_prune_verdict(manifests: Manifests, orphans: int, limit: int,
                       verdict: PruneVerdict) -> None:
    assert prune_verdict(manifests, orphans=orphans, max_prune=limit) == verdict


def test_refusals_read_as_one_line() -> None:
    assert PruneVerdict(False, "6 orphans exceed --max-prune 5").refusal == (
        "nothing pruned: 6 orphans exceed --max-prune 5")
    assert PruneVerdict(True).refusal is None


def managed(power: Power, *, managed_mark: bool = True, persistent: bool = True) -> Observed:
    mark = f'<m:managed xmlns:m="{MANAGED_NS}"/>' if managed_mark else ""
    saved = (f"<domain type='kvm'><name>o</name><uuid>c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
             f"</uuid><metadata>{mark}</metadata><memory>65536</memory><vcpu>1</vcpu></domain>")
    return Observed("o", exists=True, power=power, persistent=persistent,
                    saved=parse_domain(saved), saved_xml=saved)


@pytest.mark.parametrize("observed, verdict, plan", [
    (managed(Power.RUNNING), PruneVerdict(True), Plan(steps=(
        Step(Action.DESTROY, ORPHAN_REASON), Step(Action.UNDEFINE, ORPHAN_REASON)))),
    (managed(Power.STOPPED), PruneVerdict(True),
     Plan(steps=(Step(Action.UNDEFINE, ORPHAN_REASON),))),
    (managed(Power.RUNNING, persistent=False), PruneVerdict(True),
     Plan(steps=(Step(Action.DESTROY, ORPHAN_REASON),))),
    (managed(Power.RUNNING), PruneVerdict(False, "3 orphans exceed --max-prune 1", fails=True),
     Plan(failure="orphan not pruned: 3 orphans exceed --max-prune 1")),
    (managed(Power.RUNNING), PruneVerdict(False, "1 invalid manifest(s)"),
     Plan(note="orphan not pruned: 1 invalid manifest(s)")),
    (managed(Power.RUNNING, managed_mark=False), PruneVerdict(True),
     Plan(note="no longer a managed domain")),
    (ABSENT_DOMAIN, PruneVerdict(True), Plan(note="no longer a managed domain")),
])
def test_plan_orphan(observed: Observed, verdict: PruneVerdict, plan: Plan) -> None:
    assert plan_orphan(observed, verdict) == plan


def vm(*disks: str) -> VMSpec:
    return VMSpec(name="vm", source="vm.yaml", memory_kib=65536, current_memory_kib=65536,
                  vcpus=1, disks=tuple(Disk(path, f"vd{chr(97 + i)}")
                                       for i, path in enumerate(disks)))


DEFINE = Plan(steps=(Step(Action.DEFINE, "the domain does not exist", xml="<domain/>"),))


@pytest.mark.parametrize("spec, observed, the_plan, paths", [
    (vm(f"{IMAGES}/a.qcow2"), ABSENT_DOMAIN, DEFINE, {f"{IMAGES}/a.qcow2"}),
    (vm(f"{IMAGES}/a.qcow2"), ABSENT_DOMAIN, Plan(steps=(Step(Action.START, "x"),)), set()),
    (vm(), ABSENT_DOMAIN, DEFINE, set()),
])
def test_disks_to_check(spec: VMSpec, observed: Observed, the_plan: Plan,
                        paths: set[str]) -> None:
    assert disks_to_check(spec, observed, the_plan) == paths


def test_disks_the_domain_already_has_are_not_checked() -> None:
    saved = (f"<domain type='kvm'><name>vm</name><uuid>c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
             f"</uuid><memory>65536</memory><vcpu>1</vcpu><devices><disk type='file' "
             f"device='disk'><driver name='qemu' type='qcow2'/><source file='{IMAGES}/a.qcow2'/>"
             "<target dev='vda' bus='virtio'/></disk>"
             "</devices></domain>")
    observed = Observed("vm", exists=True, power=Power.STOPPED, persistent=True,
                        saved=parse_domain(saved), saved_xml=saved)
    spec = vm(f"{IMAGES}/a.qcow2", f"{IMAGES}/b.qcow2")
    assert disks_to_check(spec, observed, DEFINE) == {f"{IMAGES}/b.qcow2"}


def test_disk_clash() -> None:
    assert disk_clash({}) is None
    assert disk_clash({f"{IMAGES}/b": "z", f"{IMAGES}/a": "y"}) == (
        f"disk {IMAGES}/a is already used by domain 'y'")
