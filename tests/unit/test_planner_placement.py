"""plan_placement and plan_move: one VM name across hosts, as tables of what was observed
in, exact steps out (each step with the host it runs on: None is the VM's own host)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from controller.domainxml import MANAGED_NS, parse_domain
from controller.model import ABSENT_DOMAIN, DesiredState, MoveStrategy, Observed, Power, VMSpec
from controller.planner import Copy, Situation, plan_placement, preview_arrival

UUID = "c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
OTHER = "6c5d1e2f-3a4b-4c5d-8e9f-a0b1c2d3e4f5"


def spec(**fields: object) -> VMSpec:
    base: dict[str, object] = {"name": "vm", "source": "vm.yaml", "memory_kib": 65536,
                               "current_memory_kib": 65536, "vcpus": 1, "stop_timeout": 0,
                               "host": "kvm-2"}
    base.update(fields)
    return VMSpec(**base)  # type: ignore[arg-type]


def xml(*, uuid: str = UUID, owner: str | None = "kvm-2", managed: bool = True,
        memory: int = 65536) -> str:
    host = f' host="{owner}"' if owner else ""
    mark = (f'<reconcile:managed xmlns:reconcile="{MANAGED_NS}"{host} source="vm.yaml"/>'
            if managed else "")
    return (f"<domain type='kvm'><name>vm</name><uuid>{uuid}</uuid><metadata>{mark}</metadata>"
            f"<memory unit='KiB'>{memory}</memory><currentMemory unit='KiB'>{memory}"
            "</currentMemory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "</domain>")


def seen(power: Power, saved: str, *, autostart: bool = False) -> Observed:
    config = parse_domain(saved)
    live = config if power.active else None
    return Observed("vm", exists=True, power=power, persistent=True, autostart=autostart,
                    saved=config, live=live, saved_xml=saved)


RUNNING, STOPPED = Power.RUNNING, Power.STOPPED


class Case(NamedTuple):
    id: str
    spec: VMSpec
    here: Observed
    copies: tuple[Copy, ...]
    steps: list[tuple[str, str | None]]
    after: list[tuple[str, str | None]] = []
    conflict: str | None = None
    failure: str | None = None
    unknown: tuple[str, ...] = ()


SOURCE_RUNNING = (Copy("kvm-1", seen(RUNNING, xml(owner="kvm-1"), autostart=True)),)
SOURCE_STOPPED = (Copy("kvm-1", seen(STOPPED, xml(owner="kvm-1"))),)

CASES = [
    Case("no-copy: the usual plan", spec(), ABSENT_DOMAIN, (),
         [("define", None), ("start", None)]),
    Case("unknown holder: nothing at all", spec(), ABSENT_DOMAIN, (), [],
         unknown=("kvm-3",),
         failure="unknown: host kvm-3 held this VM at its last listing and is unreachable "
                 "now; nothing is done until it answers"),
    Case("two copies: a conflict", spec(), ABSENT_DOMAIN,
         SOURCE_RUNNING + (Copy("kvm-3", seen(STOPPED, xml(owner="kvm-3"))),), [],
         conflict="managed copies on hosts kvm-1, kvm-3; keep one by hand"),
    Case("cold move of a running VM", spec(), ABSENT_DOMAIN, SOURCE_RUNNING,
         [("autostart", "kvm-1"), ("destroy", "kvm-1"), ("define", "kvm-2")],
         after=[("undefine", "kvm-1")]),
    Case("cold move with a graceful stop", spec(stop_timeout=30), ABSENT_DOMAIN,
         SOURCE_RUNNING,
         [("autostart", "kvm-1"), ("shutdown", "kvm-1"), ("define", "kvm-2")],
         after=[("undefine", "kvm-1")]),
    Case("a stopped VM moves cold whatever the strategy",
         spec(move_strategy=MoveStrategy.LIVE), ABSENT_DOMAIN, SOURCE_STOPPED,
         [("define", "kvm-2")], after=[("undefine", "kvm-1")]),
    Case("live move of a running VM", spec(move_strategy=MoveStrategy.LIVE), ABSENT_DOMAIN,
         SOURCE_RUNNING, [("migrate", "kvm-1")]),
    Case("live strategy, state stopped: cold",
         spec(move_strategy=MoveStrategy.LIVE, state=DesiredState.STOPPED),
         ABSENT_DOMAIN, SOURCE_RUNNING,
         [("autostart", "kvm-1"), ("destroy", "kvm-1"), ("define", "kvm-2")],
         after=[("undefine", "kvm-1")]),
    Case("interrupted: target defined, source stopped: finish", spec(),
         seen(STOPPED, xml()), SOURCE_STOPPED, [("undefine", "kvm-1"), ("start", None)]),
    Case("interrupted: only the undefine on the source is left", spec(),
         seen(RUNNING, xml()), SOURCE_STOPPED, [("undefine", "kvm-1")]),
    Case("interrupted: source running, target holding a stale copy", spec(),
         seen(STOPPED, xml(memory=32768)), SOURCE_RUNNING,
         [("autostart", "kvm-1"), ("destroy", "kvm-1"), ("define", "kvm-2")],
         after=[("undefine", "kvm-1")]),
    Case("running on both: a conflict", spec(), seen(RUNNING, xml()), SOURCE_RUNNING, [],
         conflict="running on both kvm-1 and kvm-2; stop one by hand"),
    Case("different domains of one name: a conflict", spec(), seen(STOPPED, xml(uuid=OTHER)),
         SOURCE_STOPPED, [],
         conflict=f"different domains named 'vm' on kvm-1 ({UUID}) and kvm-2 ({OTHER})"),
    Case("unmanaged on the target: the usual conflict", spec(),
         seen(STOPPED, xml(managed=False)), SOURCE_STOPPED, [],
         conflict="domain 'vm' exists and is not managed by reconcile; set spec.adopt: true "
                  "to take it over"),
    Case("state absent removes the source", spec(state=DesiredState.ABSENT),
         ABSENT_DOMAIN, SOURCE_RUNNING, [("destroy", "kvm-1"), ("undefine", "kvm-1")]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_plan_placement(case: Case) -> None:
    situation = Situation(host="kvm-2", here=case.here, copies=case.copies,
                          unknown=case.unknown)
    result = plan_placement(case.spec, situation)
    assert [(step.action.value, step.host) for step in result.steps] == case.steps
    assert [(step.action.value, step.host) for step in result.after] == case.after
    assert (result.conflict, result.failure) == (case.conflict, case.failure)


def test_a_move_defines_the_source_definition_marked_for_the_target() -> None:
    situation = Situation(host="kvm-2", here=ABSENT_DOMAIN, copies=SOURCE_RUNNING)
    result = plan_placement(spec(), situation)
    (define,) = [step for step in result.steps if step.action.value == "define"]
    assert define.reason == "move kvm-1 → kvm-2: kvm-1's definition, same UUID"
    arriving = parse_domain(define.xml or "")
    assert (arriving.uuid, arriving.owner, arriving.source) == (UUID, "kvm-2", "vm.yaml")
    assert result.steps[0].autostart is False
    assert result.moves


def test_the_dry_run_preview_of_a_cold_move_plans_the_arrival() -> None:
    situation = Situation(host="kvm-2", here=ABSENT_DOMAIN, copies=SOURCE_RUNNING)
    move = plan_placement(spec(autostart=True, memory_kib=131072,
                               current_memory_kib=131072), situation)
    preview = preview_arrival(spec(autostart=True, memory_kib=131072,
                                   current_memory_kib=131072), situation, move)
    assert [(step.action.value, step.reason) for step in preview] == [
        ("define", "memory 64 MiB → 128 MiB, currentMemory 64 MiB → 128 MiB"),
        ("autostart", "autostart false → true"),
        ("start", "state is running, the domain is stopped")]


def test_a_live_move_preview_keeps_the_guest_running() -> None:
    """Migration brings the guest running (no start) but not its autostart flag."""
    situation = Situation(host="kvm-2", here=ABSENT_DOMAIN, copies=SOURCE_RUNNING)
    live = spec(move_strategy=MoveStrategy.LIVE, autostart=True)
    move = plan_placement(live, situation)
    assert [step.action.value for step in preview_arrival(live, situation, move)] == [
        "autostart"]
