"""Bad input loses nothing, and disk sources stay inside the allowed roots: on the real
libvirtd, through the installed command."""

from __future__ import annotations

from pathlib import Path

import libvirt

from tests.support.command import OnceRunner
from tests.support.disks import qcow2
from tests.support.domains import MIB, must_read, read_domain
from tests.support.manifests import Manifests, VMBuilder


def test_an_invalid_file_beside_valid_ones_leaves_its_vm_untouched(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner,
) -> None:
    keep, other, new = prefix + "keep", prefix + "other", prefix + "new"
    manifests.write("keep.yaml", vm("keep"))
    manifests.write("other.yaml", vm("other", state="stopped"))
    once(check_exit=0)
    before = must_read(conn, keep)
    assert before.running

    # keep's manifest now asks for changes, but one field is invalid: nothing may happen
    # to keep (above all, it must not be taken as absent); the others still converge.
    manifests.write("keep.yaml", vm("keep", memory="96MiB", vcpus="two"))
    manifests.write("other.yaml", vm("other", state="stopped", memory="80MiB"))
    manifests.write("new.yaml", vm("new", state="stopped"))
    manifests.write("broken.yaml", "apiVersion: reconcile/v1\nmetadata: [unclosed\n")

    result = once(check_exit=2)

    invalid = sorted(result.report["invalid"], key=lambda entry: entry["file"])
    assert [(e["file"], e["document"], e["path"]) for e in invalid] == [
        ("broken.yaml", 0, ""),
        ("keep.yaml", 0, "spec.vcpus"),
    ]
    assert "not valid YAML" in invalid[0]["error"]
    assert "'two'" in invalid[1]["error"]
    # reported as left alone (its manifest is invalid), with no step; never an orphan
    assert (result.result(keep), result.actions(keep)) == ("failed", [])
    assert result.vms[keep]["error"] == "left as it is: its manifest keep.yaml is invalid"
    assert keep not in result.report["orphans"]
    assert must_read(conn, keep) == before
    assert (result.result(other), result.actions(other)) == ("converged", ["define"])
    assert must_read(conn, other).saved.memory_kib == 80 * MIB
    assert (result.result(new), result.actions(new)) == ("converged", ["define"])
    assert must_read(conn, new).saved.managed


def test_a_disk_outside_the_allowed_roots_is_invalid_until_a_root_allows_it(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, image_dir: Path, tmp_path: Path,
) -> None:
    name = prefix + "d"
    outside = qcow2(tmp_path / "outside.qcow2")
    manifests.write("d.yaml", vm("d", state="stopped", disks=[{"source": str(outside)}]))

    refused = once(check_exit=2)

    assert len(refused.report["invalid"]) == 1
    entry = refused.report["invalid"][0]
    assert (entry["file"], entry["document"], entry["path"]) == (
        "d.yaml", 0, "spec.disks[0].source")
    assert "outside the allowed disk roots" in entry["error"]
    assert name not in refused.vms
    assert read_domain(conn, name) is None

    # A symlink inside the default root that leads outside it is still outside.
    link = image_dir / "escape.qcow2"
    link.symlink_to(outside)
    manifests.write("d.yaml", vm("d", state="stopped", disks=[{"source": str(link)}]))
    escaped = once(check_exit=2)
    assert [e["path"] for e in escaped.report["invalid"]] == ["spec.disks[0].source"]
    assert str(outside) in escaped.report["invalid"][0]["error"]
    assert read_domain(conn, name) is None

    # --disk-root makes the folder an allowed root.
    manifests.write("d.yaml", vm("d", state="stopped", disks=[{"source": str(outside)}]))
    allowed = once("--disk-root", str(tmp_path), check_exit=0)
    assert allowed.report["invalid"] == []
    assert (allowed.result(name), allowed.actions(name)) == ("converged", ["define"])
    assert must_read(conn, name).saved.disks == (str(outside),)


def test_a_vm_with_a_qcow2_disk_starts(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder,
    once: OnceRunner, image_dir: Path,
) -> None:
    name = prefix + "d"
    disk = qcow2(image_dir / "root.qcow2")
    manifests.write("d.yaml", vm("d", disks=[{"source": str(disk), "format": "qcow2"}]))

    created = once(check_exit=0)

    assert (created.result(name), created.actions(name)) == ("converged", ["define", "start"])
    domain = must_read(conn, name)
    assert domain.running
    assert domain.saved.disks == (str(disk),)
    assert domain.live.disks == (str(disk),)
    rerun = once(check_exit=0)
    assert (rerun.result(name), rerun.actions(name)) == ("unchanged", [])
