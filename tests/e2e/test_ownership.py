"""Ownership and prune on the real libvirtd: unmanaged domains are never touched unless
adopted, and orphans are removed only with --prune and only when that is safe.

Other managed domains may live on the host (other test runs, the operator's own), so
every --prune run here passes --max-prune equal to this test's own orphans: a foreign
orphan then makes the run prune nothing instead of removing a domain we did not create.
"""

from __future__ import annotations

from pathlib import Path

import libvirt

from tests.support.command import OnceRunner, Runner
from tests.support.domains import define_unmanaged, must_read, read_domain
from tests.support.manifests import Manifests, VMBuilder


def test_an_unmanaged_domain_is_a_conflict_and_is_left_untouched(
    conn: libvirt.virConnect, prefix: str, virt_type: str, manifests: Manifests,
    vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "pet"
    before = define_unmanaged(conn, name, virt_type, start=True)
    assert not before.saved.managed
    manifests.write("pet.yaml", vm("pet", vcpus=2, memory="96MiB"))

    result = once(check_exit=1)

    assert result.result(name) == "conflict"
    assert result.actions(name) == []
    error = result.vms[name]["error"]
    assert isinstance(error, str) and "not managed" in error and "adopt" in error
    assert "\n" not in error
    after = must_read(conn, name)
    assert after == before  # same id, uuid, state, saved and live XML
    assert name not in result.report["orphans"]

    manifests.write("pet.yaml", vm("pet", state="absent"))
    absent = once(check_exit=1)
    assert (absent.result(name), absent.actions(name)) == ("conflict", [])
    assert must_read(conn, name) == before


def test_adopt_takes_over_a_running_domain_without_a_restart(
    conn: libvirt.virConnect, prefix: str, virt_type: str, manifests: Manifests,
    vm: VMBuilder, once: OnceRunner,
) -> None:
    name = prefix + "pet"
    before = define_unmanaged(conn, name, virt_type, start=True)
    manifests.write("pet.yaml", vm("pet", adopt=True))

    adopted = once(check_exit=0)

    assert adopted.result(name) == "converged"
    assert adopted.actions(name) == ["define"]
    after = must_read(conn, name)
    assert after.saved.managed
    assert (after.uuid, after.id) == (before.uuid, before.id)
    assert after.running
    rerun = once(check_exit=0)
    assert (rerun.result(name), rerun.actions(name)) == ("unchanged", [])

    # Now managed: without a manifest it is an orphan like any other.
    manifests.write("pet.yaml", vm("other", state="absent"))
    assert once(check_exit=0).orphans(prefix) == [name]


def test_prune_reports_orphans_and_removes_them_only_when_safe(
    conn: libvirt.virConnect, prefix: str, virt_type: str, manifests: Manifests,
    vm: VMBuilder, once: OnceRunner,
) -> None:
    a, b, c, pet = (prefix + short for short in ("a", "b", "c", "pet"))
    for short in ("a", "b", "c"):
        manifests.write(f"{short}.yaml", vm(short, state="stopped"))
    once(check_exit=0).skip_if_foreign_orphans(prefix)
    define_unmanaged(conn, pet, virt_type)
    pet_before = must_read(conn, pet)

    # An orphan is reported, and kept without --prune.
    manifests.remove("b.yaml")
    reported = once(check_exit=0)
    assert reported.orphans(prefix) == [b]
    assert b not in reported.vms
    assert must_read(conn, b).saved.managed

    # Not while any manifest is invalid.
    manifests.write("bad.yaml", vm("bad", vcpus="two"))
    refused = once("--prune", "--max-prune", "1", check_exit=2)
    assert refused.orphans(prefix) == [b]
    assert read_domain(conn, b) is not None
    assert "nothing pruned: 1 invalid manifest(s)" in refused.proc.stderr
    manifests.remove("bad.yaml")

    # Not when more would go than --max-prune: nothing at all, and the run fails.
    manifests.remove("c.yaml")
    too_many = once("--prune", "--max-prune", "1", check_exit=1)
    assert too_many.orphans(prefix) == [b, c]
    for name in (b, c):
        assert too_many.result(name) == "failed"
        assert "--max-prune" in too_many.vms[name]["error"]
        assert read_domain(conn, name) is not None

    # With --prune and within the limit: removed. Unmanaged domains are never orphans.
    pruned = once("--prune", "--max-prune", "2", check_exit=0)
    assert pruned.orphans(prefix) == [b, c]
    assert (pruned.result(b), pruned.actions(b)) == ("pruned", ["undefine"])
    assert (pruned.result(c), pruned.actions(c)) == ("pruned", ["undefine"])
    assert pruned.result(a) == "unchanged"
    assert read_domain(conn, b) is None and read_domain(conn, c) is None
    assert must_read(conn, a).saved.managed
    assert must_read(conn, pet) == pet_before
    assert once("--prune", "--max-prune", "0", check_exit=0).orphans(prefix) == []


def test_a_running_orphan_is_destroyed_and_undefined_by_prune(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    keep, gone = prefix + "keep", prefix + "gone"
    manifests.write("keep.yaml", vm("keep", state="stopped"))
    manifests.write("gone.yaml", vm("gone"))
    once(check_exit=0).skip_if_foreign_orphans(prefix)
    assert must_read(conn, gone).running

    manifests.remove("gone.yaml")
    pruned = once("--prune", "--max-prune", "1", check_exit=0)

    assert (pruned.result(gone), pruned.actions(gone)) == ("pruned", ["destroy", "undefine"])
    assert pruned.vms[gone]["source"] is None
    assert read_domain(conn, gone) is None
    assert read_domain(conn, keep) is not None


def test_an_empty_manifest_directory_prunes_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", state="stopped"))
    once(check_exit=0)
    manifests.remove("a.yaml")

    empty = once("--prune", "--max-prune", "1", check_exit=0)

    assert empty.report["vms"] == []
    assert empty.orphans(prefix) == [name]
    assert "holds no manifests" in empty.proc.stderr, empty.proc.stderr
    assert must_read(conn, name).saved.managed


def test_a_missing_manifest_directory_is_a_usage_error_and_prunes_nothing(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, run: Runner, tmp_path: Path,
) -> None:
    name = prefix + "a"
    manifests.write("a.yaml", vm("a", state="stopped"))
    once(check_exit=0)
    missing = tmp_path / "nowhere"

    for output in ("text", "json"):
        proc = run("--once", "-m", str(missing), "--prune", "--max-prune", "1", "-o", output,
                      check_exit=2)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("reconcile: error: ")
        assert str(missing) in lines[0] and "does not exist" in lines[0]
    assert must_read(conn, name).saved.managed
