"""What users and pipelines read: the dry run, the JSON report, exit codes when libvirt
cannot be reached."""

from __future__ import annotations

import libvirt

from tests.support.command import OnceRunner, Runner, parse_report
from tests.support.domains import must_read, read_domain, snapshot
from tests.support.manifests import Manifests, VMBuilder

VM_KEYS = {"name", "source", "steps", "result", "error", "addresses", "agent"}  # 9: guests
RESULTS = {"unchanged", "converged", "planned", "failed", "conflict", "restart-pending",
           "suspended", "pruned"}
ACTIONS = {"set-memory", "shutdown", "destroy", "undefine", "define", "autostart", "start"}


def test_dry_run_plans_changes_nothing_and_exits_3_then_0(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    a, b = prefix + "a", prefix + "b"
    # machine: pc is saved as its canonical name (pc-i440fx-7.2); the dry run's read-only
    # connection must resolve the alias as well, or it sees drift on a converged host.
    manifests.write("a.yaml", vm("a", machine="pc"))
    once(check_exit=0)
    manifests.write("a.yaml", vm("a", machine="pc", vcpus=2))
    manifests.write("b.yaml", vm("b"))
    before = snapshot(conn, prefix)
    assert list(before) == [a]

    planned = once("--dry-run", check_exit=3)

    assert (planned.result(a), planned.actions(a)) == ("planned", ["destroy", "define", "start"])
    assert (planned.result(b), planned.actions(b)) == ("planned", ["define", "start"])
    for entry in planned.report["vms"]:
        assert all(isinstance(step["reason"], str) and step["reason"] for step in entry["steps"])
    assert snapshot(conn, prefix) == before
    assert read_domain(conn, b) is None

    once(check_exit=0)
    assert must_read(conn, a).live.vcpus == 2
    settled = once("--dry-run", check_exit=0)
    assert {name: (e["result"], e["steps"]) for name, e in settled.vms.items()} == {
        a: ("unchanged", []), b: ("unchanged", []),
    }


def test_json_report_has_the_contract_shape(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    manifests.write("vms.yaml", vm("a", state="stopped"), vm("b", state="stopped"))
    manifests.write("sub/bad.yaml", vm("bad", vcpus="two"))

    report = once(check_exit=2).report

    assert set(report) == {"vms", "invalid", "orphans"}
    assert [entry["name"] for entry in report["vms"]] == [prefix + "a", prefix + "b"]
    for entry in report["vms"]:
        assert set(entry) == VM_KEYS
        assert entry["source"] == "vms.yaml"
        assert entry["result"] == "converged" and entry["result"] in RESULTS
        assert entry["error"] is None
        assert entry["steps"] == [{"action": "define", "reason": entry["steps"][0]["reason"]}]
        for step in entry["steps"]:
            assert set(step) == {"action", "reason"}
            assert step["action"] in ACTIONS
            assert isinstance(step["reason"], str) and step["reason"]
    assert len(report["invalid"]) == 1
    invalid = report["invalid"][0]
    assert set(invalid) == {"file", "document", "path", "error"}
    assert (invalid["file"], invalid["document"], invalid["path"]) == (
        "sub/bad.yaml", 0, "spec.vcpus")
    assert isinstance(invalid["error"], str) and invalid["error"]
    assert isinstance(report["orphans"], list)
    assert all(isinstance(name, str) for name in report["orphans"])


def test_unreachable_libvirt_fails_every_vm_with_a_clear_error(
    prefix: str, manifests: Manifests, vm: VMBuilder, run: Runner,
) -> None:
    manifests.write("vms.yaml", vm("a"), vm("b", state="absent"))
    uri = "qemu+unix:///system?socket=/nonexistent"

    proc = run("--once", "-o", "json", "-c", uri, check_exit=1)

    report = parse_report(proc)
    assert [entry["name"] for entry in report["vms"]] == [prefix + "a", prefix + "b"]
    for entry in report["vms"]:
        assert (entry["result"], entry["steps"]) == ("failed", [])
        assert isinstance(entry["error"], str) and "\n" not in entry["error"]
        assert "cannot connect" in entry["error"] and "/nonexistent" in entry["error"]
    assert report["orphans"] == []

    text = run("--once", "-c", uri, check_exit=1)
    assert "failed" in text.stdout and "/nonexistent" in text.stdout
    assert text.stderr.count("\n") == 1  # one log line, no traceback
