"""`guestAgent` on the real libvirtd with tiny guests: the channel is created, hot-plugged
and unplugged in the running domain without a restart where it has a virtio-serial
controller, and a restart adds it where it has none. (The agent answering guest-ping
inside a real guest is in test_firmware_guest.py.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from ..support.command import OnceRunner
from ..support.domains import must_read
from ..support.manifests import Manifests, VMBuilder

AGENT = "org.qemu.guest_agent.0"


def agent_channels(xml: str) -> list[ET.Element]:
    return [channel for channel in ET.fromstring(xml).findall("devices/channel")
            if (channel.find("target") is not None
                and channel.find("target").get("name") == AGENT)]  # type: ignore[union-attr]


def has_controller(xml: str) -> bool:
    return any(c.get("type") == "virtio-serial"
               for c in ET.fromstring(xml).findall("devices/controller"))


def test_the_agent_channel_is_hot_plugged_both_ways_without_a_restart(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    name = prefix + "ga"
    manifests.write("a.yaml", vm("ga", guestAgent=True))
    first = once(check_exit=0)
    assert first.actions(name) == ["define", "start"]
    booted = must_read(conn, name)
    assert booted.live_xml is not None
    assert len(agent_channels(booted.saved_xml)) == 1 and has_controller(booted.live_xml)
    [live_channel] = agent_channels(booted.live_xml)
    source = live_channel.find("source")
    assert source is not None and source.get("mode") == "bind"  # libvirt's socket
    assert once(check_exit=0).result(name) == "unchanged"

    manifests.write("a.yaml", vm("ga", guestAgent=False))
    off = once(check_exit=0)
    assert off.result(name) == "converged"
    assert [(s["action"], s["reason"]) for s in off.vms[name]["steps"]] == [
        ("detach", "guestAgent true → false (live)"), ("define", "guestAgent true → false")]
    after = must_read(conn, name)
    assert after.id == booted.id, "the guest was restarted"
    assert after.live_xml is not None
    assert agent_channels(after.live_xml) == [] and agent_channels(after.saved_xml) == []
    assert once(check_exit=0).result(name) == "unchanged"

    manifests.write("a.yaml", vm("ga", guestAgent=True))
    on = once(check_exit=0)
    assert on.actions(name) == ["attach", "define"]
    again = must_read(conn, name)
    assert again.id == booted.id, "the guest was restarted"
    assert again.live_xml is not None and len(agent_channels(again.live_xml)) == 1
    assert once(check_exit=0).result(name) == "unchanged"


def test_without_a_virtio_serial_controller_the_agent_needs_a_restart(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    name = prefix + "gb"
    manifests.write("b.yaml", vm("gb"))
    once(check_exit=0)
    before = must_read(conn, name)
    assert before.live_xml is not None and not has_controller(before.live_xml)

    manifests.write("b.yaml", vm("gb", guestAgent=True, updatePolicy="next-boot"))
    pending = once(check_exit=0)
    assert pending.result(name) == "restart-pending"
    assert pending.actions(name) == ["define"]
    assert must_read(conn, name).id == before.id

    manifests.write("b.yaml", vm("gb", guestAgent=True))
    restarted = once(check_exit=0)
    assert restarted.actions(name) == ["destroy", "start"]
    after = must_read(conn, name)
    assert after.running and after.id != before.id
    assert after.live_xml is not None and len(agent_channels(after.live_xml)) == 1
    assert once(check_exit=0).result(name) == "unchanged"
