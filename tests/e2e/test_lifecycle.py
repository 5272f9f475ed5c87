"""`reconcile --once` on the real libvirtd: creating, changing, stopping and removing
tiny real guests, each outcome read back from libvirt."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import libvirt
import pytest

from tests.support.command import OnceRunner
from tests.support.domains import MIB, Config, must_read, read_domain
from tests.support.manifests import Manifests, VMBuilder


def test_create_two_vms_then_a_rerun_changes_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    web, db = prefix + "web", prefix + "db"
    manifests.write("vms.yaml", vm("web", memory="80MiB", vcpus=2),
                    vm("db", state="stopped", memory="72MiB"))

    first = once(check_exit=0)

    assert sorted(first.vms) == [db, web]
    assert first.result(web) == "converged"
    assert first.actions(web) == ["define", "start"]
    assert first.result(db) == "converged"
    assert first.actions(db) == ["define"]
    assert first.vms[web]["source"] == "vms.yaml"
    assert first.vms[web]["error"] is None
    running = must_read(conn, web)
    assert running.running and running.persistent and not running.autostart
    assert running.saved.managed
    assert (running.saved.memory_kib, running.saved.current_memory_kib) == (80 * MIB, 80 * MIB)
    assert (running.live.memory_kib, running.live.vcpus, running.saved.vcpus) == (80 * MIB, 2, 2)
    stopped = must_read(conn, db)
    assert stopped.shut_off and stopped.persistent and stopped.saved.managed
    assert (stopped.saved.memory_kib, stopped.saved.vcpus) == (72 * MIB, 1)

    second = once(check_exit=0)

    assert {name: (entry["result"], entry["steps"]) for name, entry in second.vms.items()} == {
        web: ("unchanged", []), db: ("unchanged", []),
    }
    again = must_read(conn, web)
    assert (again.id, again.uuid) == (running.id, running.uuid)
    assert must_read(conn, db).saved_xml == stopped.saved_xml


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("memory", "96MiB", lambda config: config.memory_kib == 96 * MIB),
    ("vcpus", 2, lambda config: config.vcpus == 2),
], ids=["memory", "vcpus"])
def test_restart_policy_applies_a_change_by_restarting_with_the_same_uuid(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
    field: str, value: object, expect: Callable[[Config], bool],
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a"))
    once(check_exit=0)
    before = must_read(conn, name)

    manifests.write("a.yaml", vm("a", updatePolicy="restart", **{field: value}))
    changed = once(check_exit=0)

    assert changed.result(name) == "converged"
    assert changed.actions(name) == ["destroy", "define", "start"]
    after = must_read(conn, name)
    assert after.running
    assert after.uuid == before.uuid
    assert after.id != before.id  # it was restarted
    assert expect(after.live) and expect(after.saved)
    assert not expect(before.live)

    rerun = once(check_exit=0)
    assert (rerun.result(name), rerun.actions(name)) == ("unchanged", [])


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("memory", "96MiB", lambda config: config.memory_kib == 96 * MIB),
    ("vcpus", 2, lambda config: config.vcpus == 2),
], ids=["memory", "vcpus"])
def test_next_boot_policy_saves_the_change_and_reports_restart_pending(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
    field: str, value: object, expect: Callable[[Config], bool],
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", updatePolicy="next-boot"))
    once(check_exit=0)
    before = must_read(conn, name)

    manifests.write("a.yaml", vm("a", updatePolicy="next-boot", **{field: value}))
    changed = once(check_exit=0)

    assert changed.result(name) == "restart-pending"
    assert changed.actions(name) == ["define"]
    after = must_read(conn, name)
    assert after.running
    assert (after.id, after.uuid) == (before.id, before.uuid)  # not restarted
    assert expect(after.saved)
    assert not expect(after.live)
    assert after.live_xml == before.live_xml

    second = once(check_exit=0)
    assert (second.result(name), second.actions(name)) == ("restart-pending", [])
    assert must_read(conn, name).id == before.id


def test_lower_current_memory_is_applied_without_a_restart(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", memory="96MiB"))
    once(check_exit=0)
    before = must_read(conn, name)
    assert before.saved.current_memory_kib == 96 * MIB

    manifests.write("a.yaml", vm("a", memory="96MiB", currentMemory="64MiB"))
    changed = once(check_exit=0)

    assert changed.result(name) == "converged"
    assert changed.actions(name) == ["set-memory", "define"]
    after = must_read(conn, name)
    assert after.running
    assert (after.id, after.uuid) == (before.id, before.uuid)
    assert (after.saved.memory_kib, after.saved.current_memory_kib) == (96 * MIB, 64 * MIB)
    assert after.live.memory_kib == 96 * MIB

    rerun = once(check_exit=0)
    assert (rerun.result(name), rerun.actions(name)) == ("unchanged", [])
    assert must_read(conn, name).id == before.id


def test_new_memory_while_running_converges_running_with_the_same_uuid(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    """The default policy (restart): lowering memory restarts, with no pointless live
    balloon before it."""
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", memory="96MiB"))
    once(check_exit=0)
    before = must_read(conn, name)

    manifests.write("a.yaml", vm("a", memory="64MiB"))
    changed = once(check_exit=0)

    assert changed.result(name) == "converged"
    assert changed.actions(name) == ["destroy", "define", "start"]
    after = must_read(conn, name)
    assert after.running and after.uuid == before.uuid
    assert (after.live.memory_kib, after.saved.memory_kib) == (64 * MIB, 64 * MIB)
    assert after.saved.current_memory_kib == 64 * MIB
    assert once(check_exit=0).result(name) == "unchanged"


def test_stopped_then_absent_then_running_again(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a"))
    once(check_exit=0)
    created = must_read(conn, name)
    assert created.running

    manifests.write("a.yaml", vm("a", state="stopped"))
    stopped = once(check_exit=0)
    assert (stopped.result(name), stopped.actions(name)) == ("converged", ["destroy"])
    domain = must_read(conn, name)
    assert domain.shut_off and domain.persistent and domain.uuid == created.uuid

    manifests.write("a.yaml", vm("a", state="absent"))
    absent = once(check_exit=0)
    assert (absent.result(name), absent.actions(name)) == ("converged", ["undefine"])
    assert read_domain(conn, name) is None
    assert once(check_exit=0).vms[name] == {
        "name": name, "source": "a.yaml", "steps": [], "result": "unchanged", "error": None,
        "addresses": [], "agent": None,
    }

    manifests.write("a.yaml", vm("a", state="running"))
    back = once(check_exit=0)
    assert (back.result(name), back.actions(name)) == ("converged", ["define", "start"])
    domain = must_read(conn, name)
    assert domain.running and domain.saved.managed


def test_absent_removes_a_running_vm(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a"))
    once(check_exit=0)

    manifests.write("a.yaml", vm("a", state="absent"))
    absent = once(check_exit=0)

    assert (absent.result(name), absent.actions(name)) == ("converged", ["destroy", "undefine"])
    assert read_domain(conn, name) is None


def test_a_changed_pinned_uuid_replaces_the_domain(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "a"
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    manifests.write("a.yaml", vm("a", uuid=old))
    once(check_exit=0)
    assert must_read(conn, name).uuid == old

    manifests.write("a.yaml", vm("a", uuid=new))
    replaced = once(check_exit=0)

    assert replaced.result(name) == "converged"
    assert replaced.actions(name) == ["destroy", "undefine", "define", "start"]
    domain = must_read(conn, name)
    assert domain.uuid == new
    assert domain.running and domain.persistent and domain.saved.managed
    rerun = once(check_exit=0)
    assert (rerun.result(name), rerun.actions(name)) == ("unchanged", [])


def test_stop_timeout_asks_first_then_destroys_a_guest_that_ignores_it(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    """The tiny guests have no OS to act on ACPI: after stopTimeout they are destroyed."""
    name = prefix + "a"
    manifests.write("a.yaml", vm("a"))
    once(check_exit=0)

    manifests.write("a.yaml", vm("a", state="stopped", stopTimeout=1))
    stopped = once(check_exit=0)

    assert (stopped.result(name), stopped.actions(name)) == ("converged", ["shutdown"])
    assert must_read(conn, name).shut_off


def test_suspend_reports_drift_and_changes_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", state="stopped"))
    once(check_exit=0)
    before = must_read(conn, name)

    manifests.write("a.yaml", vm("a", state="running", vcpus=2, suspend=True))
    suspended = once(check_exit=0)

    assert (suspended.result(name), suspended.actions(name)) == ("suspended", ["define", "start"])
    assert must_read(conn, name) == before
