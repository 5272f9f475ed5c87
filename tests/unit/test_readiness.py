"""Readiness decisions, the wait loop, reading libvirt's address answers, and the
renderings of addresses: status columns, the Ansible inventory. No libvirt."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest

from controller.ansible import ansible_host, group_name, inventory
from controller.model import (
    DesiredState,
    GuestAddress,
    GuestInfo,
    Observed,
    Outcome,
    Power,
    Readiness,
    Result,
    VMSpec,
)
from controller.readiness import Target, Verdict, judge, looked_at, to_wait_for, wait_ready
from controller.render import guest_summary, status_rows, status_text
from controller.virt.guest import addresses_from, devices_of, merge, usable

LEASE = GuestAddress("192.168.150.101", 24, "52:54:00:00:00:01", "lease")
AGENT = GuestAddress("10.77.0.5", 24, "52:54:00:00:00:02", "agent")
V6 = GuestAddress("fd00::5", 64, "52:54:00:00:00:02", "agent")


def info(**fields: object) -> GuestInfo:
    base: dict[str, object] = {"running": True}
    base.update(fields)
    return GuestInfo(**base)  # type: ignore[arg-type]


# --- judge: a table ------------------------------------------------------------------

@pytest.mark.parametrize(("readiness", "guest", "expected"), [
    (Readiness.RUNNING, info(), Verdict(True)),
    (Readiness.RUNNING, GuestInfo(running=False), Verdict(False, "not running", final=True)),
    (Readiness.ADDRESS, info(addresses=(LEASE,)), Verdict(True)),
    (Readiness.ADDRESS, info(), Verdict(False, "no address",
                                        "no DHCP lease, and no guest agent channel")),
    (Readiness.ADDRESS, info(channel=True, agent=False),
     Verdict(False, "no address", "agent not answering")),
    (Readiness.ADDRESS, info(channel=True, agent=True),
     Verdict(False, "no address", "no DHCP lease; the agent reports none")),
    (Readiness.AGENT, info(channel=True, agent=True), Verdict(True)),
    (Readiness.AGENT, info(channel=True, agent=False, addresses=(LEASE,)),
     Verdict(False, "agent not answering")),
    (Readiness.AGENT, info(addresses=(LEASE,)),
     Verdict(False, "no guest agent", "the domain has no org.qemu.guest_agent.0 channel",
             final=True)),
    (Readiness.AGENT, GuestInfo(error="cannot read domain 'x': boom"),
     Verdict(False, "guest unknown", "cannot read domain 'x': boom")),
], ids=lambda value: "" if not isinstance(value, Readiness) else value.value)
def test_judge(readiness: Readiness, guest: GuestInfo, expected: Verdict) -> None:
    assert judge(readiness, guest) == expected


def test_messages_say_what_was_missing_and_for_how_long() -> None:
    assert Verdict(False, "no address", "agent not answering").message(300) == \
        "no address after 300 s (agent not answering)"
    assert Verdict(False, "agent not answering").message(2.5) == "agent not answering after 2.5 s"
    final = Verdict(False, "no guest agent", "no channel", final=True)
    assert final.message(300) == final.message() == "not ready: no guest agent (no channel)"


# --- the wait loop ---------------------------------------------------------------------

def scripted(*answers: GuestInfo) -> tuple[Callable[[], GuestInfo], list[float]]:
    """A look that gives `answers` in turn (the last one forever), noting when it ran."""
    calls: list[float] = []

    def look() -> GuestInfo:
        calls.append(time.monotonic())
        return answers[min(len(calls), len(answers)) - 1]
    return look, calls


def test_waits_until_each_vm_is_ready_with_a_backoff_of_its_own() -> None:
    slow, slow_calls = scripted(info(), info(), info(), info(addresses=(LEASE,)))
    quick, quick_calls = scripted(info())
    results = wait_ready([Target("slow", Readiness.ADDRESS, slow),
                          Target("quick", Readiness.RUNNING, quick)],
                         timeout=30, backoff=(0.02, 0.08))
    assert [(r.target.name, r.verdict.ready, r.info.addresses) for r in results] == [
        ("slow", True, (LEASE,)), ("quick", True, ())]
    assert len(slow_calls) == 4 and len(quick_calls) == 1  # a ready VM is not looked at again
    gaps = [later - earlier for earlier, later in zip(slow_calls, slow_calls[1:], strict=False)]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08  # doubling


def test_a_vm_never_ready_fails_at_the_deadline_with_its_last_look() -> None:
    never, calls = scripted(info(channel=True, agent=False))
    started = time.monotonic()
    [result] = wait_ready([Target("a", Readiness.ADDRESS, never)], timeout=0.3,
                          backoff=(0.01, 0.05))
    assert time.monotonic() - started >= 0.3
    assert result.verdict == Verdict(False, "no address", "agent not answering")
    assert result.verdict.message(0.3) == "no address after 0.3 s (agent not answering)"
    assert len(calls) >= 3


def test_a_final_verdict_ends_the_wait_for_that_vm_at_once() -> None:
    no_channel, calls = scripted(info())
    started = time.monotonic()
    [result] = wait_ready([Target("a", Readiness.AGENT, no_channel)], timeout=60)
    assert time.monotonic() - started < 30  # not the deadline
    assert result.verdict.final and len(calls) == 1


def test_a_look_that_never_returns_is_given_up_at_the_deadline() -> None:
    release = threading.Event()

    def hangs() -> GuestInfo:
        release.wait(60)
        return info()
    try:
        [result] = wait_ready([Target("a", Readiness.RUNNING, hangs)], timeout=0.2)
    finally:
        release.set()
    assert result.verdict.ready is False
    assert result.info.error == "no answer from libvirt within 0.2 s"


def test_a_look_that_raises_is_reported_not_raised() -> None:
    def broken() -> GuestInfo:
        raise RuntimeError("bug")
    [result] = wait_ready([Target("a", Readiness.RUNNING, broken)], timeout=0.2,
                          backoff=(0.05, 0.05))
    assert result.info.error == "cannot read the guest: bug"


def test_json_reads_no_guest_of_a_vm_seen_stopped_and_left_unchanged() -> None:
    def outcome(result: Result, power: Power | None, state: DesiredState) -> Outcome:
        observed = Observed(name="a", exists=True, power=power) if power else None
        return Outcome("a", "a.yaml", result, observed=observed,
                       spec=VMSpec(name="a", source="", state=state))
    stopped, running = DesiredState.STOPPED, DesiredState.RUNNING
    assert not looked_at(outcome(Result.UNCHANGED, Power.STOPPED, stopped))
    assert not looked_at(outcome(Result.UNCHANGED, Power.STOPPED, running))  # as the pass saw it
    assert looked_at(outcome(Result.UNCHANGED, Power.RUNNING, running))
    assert looked_at(outcome(Result.UNCHANGED, Power.PAUSED, stopped))
    assert looked_at(outcome(Result.CONVERGED, Power.STOPPED, running))  # started by the pass
    assert looked_at(outcome(Result.FAILED, Power.STOPPED, running))
    assert looked_at(outcome(Result.RESTART_PENDING, Power.STOPPED, running))


def test_only_running_vms_that_converged_are_waited_for() -> None:
    def outcome(name: str, result: Result, state: DesiredState) -> Outcome:
        return Outcome(name, f"{name}.yaml", result, spec=VMSpec(name=name, source="",
                                                                 state=state))
    outcomes = [outcome("a", Result.CONVERGED, DesiredState.RUNNING),
                outcome("b", Result.UNCHANGED, DesiredState.RUNNING),
                outcome("c", Result.RESTART_PENDING, DesiredState.RUNNING),
                outcome("d", Result.FAILED, DesiredState.RUNNING),
                outcome("e", Result.SUSPENDED, DesiredState.RUNNING),
                outcome("f", Result.CONVERGED, DesiredState.STOPPED),
                Outcome("g", None, Result.PRUNED)]
    assert [o.name for o in to_wait_for(outcomes)] == ["a", "b", "c"]


# --- libvirt's answers, read -------------------------------------------------------------

LIVE_XML = """<domain type='kvm' id='3'><name>a</name><devices>
  <interface type='network'><mac address='52:54:00:00:00:01'/><source network='n'/></interface>
  <interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='b'/></interface>
  <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
  </channel>
  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
</devices></domain>"""


def test_devices_of_a_live_definition() -> None:
    devices = devices_of(LIVE_XML)
    assert devices.macs == ("52:54:00:00:00:01", "52:54:00:00:00:02")
    assert (devices.channel, devices.channel_connected) == (True, True)
    bare = devices_of("<domain><devices/></domain>")
    assert (bare.macs, bare.channel, bare.channel_connected) == ((), False, False)


@pytest.mark.parametrize(("address", "reachable"), [
    ("192.168.1.5", True), ("10.0.0.1", True), ("fd00::1", True), ("2001:db8::1", True),
    ("127.0.0.1", False), ("::1", False), ("fe80::5054:ff:fe00:1", False),
    ("169.254.3.4", False), ("0.0.0.0", False), ("not an address", False)])
def test_usable_addresses(address: str, reachable: bool) -> None:
    assert usable(address) is reachable


def test_addresses_from_an_agent_answer_leave_out_loopback_and_link_local() -> None:
    reply = {
        "lo": {"addrs": [{"addr": "127.0.0.1", "prefix": 8, "type": 0},
                         {"addr": "::1", "prefix": 128, "type": 1}], "hwaddr": "00:00:00:00:00:00"},
        "eth1": {"addrs": [{"addr": "fe80::1", "prefix": 64, "type": 1},
                           {"addr": "10.77.0.5", "prefix": 24, "type": 0}],
                 "hwaddr": "52:54:00:00:00:02"},
    }
    assert addresses_from(reply, "agent") == {"52:54:00:00:00:02": [AGENT]}


def test_merge_prefers_the_lease_per_interface_and_keeps_the_domains_order() -> None:
    macs = ("52:54:00:00:00:01", "52:54:00:00:00:02")
    lease_of_first = {"52:54:00:00:00:01": [LEASE]}
    agent_of_both = {"52:54:00:00:00:01": [GuestAddress(LEASE.address, 24, LEASE.mac, "agent")],
                     "52:54:00:00:00:02": [V6, AGENT]}
    assert merge(macs, lease_of_first, agent_of_both) == (LEASE, AGENT, V6)
    assert merge(macs, {}, {}) == ()
    extra = GuestAddress("10.1.1.1", 8, "52:54:00:00:00:09", "agent")  # e.g. a passed-through NIC
    assert merge(macs, lease_of_first, {extra.mac: [extra]}) == (LEASE, extra)


# --- renderings ---------------------------------------------------------------------------

def running(name: str, guest: GuestInfo | None, *, labels: tuple[tuple[str, str], ...] = (),
            host: str | None = None, result: Result = Result.UNCHANGED) -> Outcome:
    spec = VMSpec(name=name, source=f"{name}.yaml", labels=labels, memory_kib=65536, vcpus=1)
    return Outcome(name, spec.source, result, spec=spec, host=host, guest=guest,
                   observed=Observed(name=name, exists=True, power=Power.RUNNING))


def test_status_rows_and_table_carry_addresses_and_agent() -> None:
    rows = status_rows([running("a", info(addresses=(LEASE, AGENT), channel=True, agent=True)),
                        running("b", None, result=Result.PLANNED)], [])
    assert [(row["name"], row["host"], row["inSync"], row["agent"], row["addresses"])
            for row in rows] == [
        ("a", None, True, True, [LEASE.to_json(), AGENT.to_json()]),
        ("b", None, False, None, [])]
    table = [re.split(r"\s{2,}", line) for line in status_text(rows).splitlines()]
    assert table[0] == ["NAME", "DESIRED", "ACTUAL", "MEMORY", "VCPUS", "OWNER", "SYNC",
                        "ADDRESSES", "AGENT", "REASON"]
    assert table[1][7:9] == ["192.168.150.101,10.77.0.5", "yes"]
    assert table[2][7:9] == ["-", "-"]
    assert status_text(rows, by_host=True).splitlines()[1].startswith("(-c)  a ")


def test_guest_summary() -> None:
    assert guest_summary(info(addresses=(LEASE,), channel=True, agent=False)) == \
        "192.168.150.101/24 (lease); agent not answering"
    assert guest_summary(info()) == "no address; no agent"


def test_the_inventory_groups_by_label_and_host() -> None:
    document, no_address = inventory([
        running("web-1", info(addresses=(V6, AGENT), channel=True, agent=True),
                labels=(("team", "web"), ("tier", "front-end")), host="kvm-1"),
        running("web-2", info(), labels=(("team", "web"),), host="kvm-2"),
        running("off", GuestInfo(running=False), labels=(("team", "web"),)),
        running("unread", None)])
    assert no_address == ["web-2"]
    assert document["_meta"]["hostvars"]["web-1"] == {
        "ansible_host": "10.77.0.5", "reconcile_host": "kvm-1", "reconcile_source": "web-1.yaml",
        "reconcile_labels": {"team": "web", "tier": "front-end"},
        "reconcile_addresses": [V6.to_json(), AGENT.to_json()], "reconcile_agent": True}
    assert "ansible_host" not in document["_meta"]["hostvars"]["web-2"]
    assert set(document["_meta"]["hostvars"]) == {"web-1", "web-2"}
    assert document["all"] == {"children": ["host_kvm_1", "host_kvm_2", "label_team_web",
                                            "label_tier_front_end", "ungrouped"]}
    assert document["label_team_web"] == {"hosts": ["web-1", "web-2"]}
    assert document["host_kvm_1"] == {"hosts": ["web-1"]}
    assert document["ungrouped"] == {"hosts": []}


def test_group_names_and_the_chosen_address() -> None:
    assert group_name("label", "app.kubernetes.io/name", "web 1") == \
        "label_app_kubernetes_io_name_web_1"
    assert ansible_host([V6, AGENT]) == "10.77.0.5"
    assert ansible_host([V6]) == "fd00::5"
    assert ansible_host([]) is None
