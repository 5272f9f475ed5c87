"""An unreadable manifest is not a missing one (CONTRACT section 2): the ownership mark
records the manifest file, and a managed domain whose file is invalid is reported as left
as it is, never as an orphan, in --once (text and JSON) and status, and never pruned.

Each run starts libvirt's test driver from a host file of its own, so the domains the
file holds are there again in every run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.domainxml import MANAGED_NS
from controller.manifests import load_directory
from controller.virt import Hypervisor
from tests.support.command import run_main

from ..support.rig import Rig
from .conftest import vm

UUID = "c17170fc-7d7e-4921-a1fb-7ce46ac4226e"
NOT_YAML = "apiVersion: reconcile/v1\nkind: [\n"


def host_file(tmp_path: Path, *, source: str | None) -> str:
    """A host with one managed, running domain 'a' whose mark names `source`."""
    mark = f" source='{source}'" if source else ""
    path = tmp_path / "host.xml"
    path.write_text(f"""<node>
  <domain type='kvm'>
    <name>a</name><uuid>{UUID}</uuid>
    <metadata><reconcile:managed xmlns:reconcile='{MANAGED_NS}'{mark}/></metadata>
    <memory unit='MiB'>64</memory><currentMemory unit='MiB'>64</currentMemory><vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
""", encoding="utf-8")
    return f"test://{path}"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NO_COLOR", "1")
    path = tmp_path / "manifests"
    path.mkdir()
    (path / "b.yaml").write_text(vm("b"))  # a valid neighbour, reconciled as usual
    return path


@pytest.mark.parametrize("broken", [NOT_YAML, vm("a", memory="lots")],
                         ids=["not-yaml", "schema"])
def test_once_leaves_the_domain_of_an_invalid_manifest_alone(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tree: Path, broken: str) -> None:
    (tree / "a.yaml").write_text(broken)
    uri = host_file(tmp_path, source="a.yaml")
    code, out, err = run_main(capsys, "--once", "--prune", "-m", str(tree), "-c", uri, "-o", "json")
    assert code == 2, err
    report = json.loads(out)
    assert report["orphans"] == []
    entries = {entry["name"]: entry for entry in report["vms"]}
    assert entries["a"] == {"name": "a", "source": "a.yaml", "steps": [], "result": "failed",
                            "error": "left as it is: its manifest a.yaml is invalid",
                            "addresses": [], "agent": None}
    assert entries["b"]["result"] == "converged"
    assert [entry["file"] for entry in report["invalid"]] == ["a.yaml"]

    code, out, _ = run_main(capsys, "--once", "--prune", "-m", str(tree), "-c", uri)
    assert code == 2
    assert "  ! a  failed  (a.yaml)\n      error: left as it is: its manifest a.yaml is invalid" \
        in out
    assert "orphans:" not in out


def test_status_says_left_as_it_is(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   tree: Path) -> None:
    (tree / "a.yaml").write_text(NOT_YAML)
    code, out, _ = run_main(capsys, "status", "-m", str(tree), "-c",
                            host_file(tmp_path, source="a.yaml"), "-o", "json")
    assert code == 2
    rows = {row["name"]: row for row in json.loads(out)["vms"]}
    assert (rows["a"]["owner"], rows["a"]["in_sync"], rows["a"]["reason"]) == (
        "managed", "unknown", "left as it is: its manifest a.yaml is invalid")


def test_a_mark_naming_a_file_that_is_gone_is_an_orphan(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tree: Path) -> None:
    uri = host_file(tmp_path, source="a.yaml")  # a.yaml was deleted, not made invalid
    code, out, _ = run_main(capsys, "--once", "--prune", "-m", str(tree), "-c", uri, "-o", "json")
    assert code == 0
    report = json.loads(out)
    assert report["orphans"] == ["a"]
    assert {entry["name"]: entry["result"] for entry in report["vms"]}["a"] == "pruned"


def test_a_domain_defined_by_reconcile_records_its_manifest(
        tree: Path, hypervisor: Hypervisor, rig: Rig) -> None:
    (tree / "sub").mkdir()
    (tree / "sub" / "a.yaml").write_text(vm("a"))
    rig.run_pass(load_directory(str(tree)))
    saved = hypervisor.domains.observe("a").saved
    assert saved is not None and saved.source == "sub/a.yaml"


def test_an_older_mark_gets_the_file_at_the_next_pass(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, tree: Path) -> None:
    (tree / "a.yaml").write_text(vm("a"))
    code, out, _ = run_main(capsys, "--once", "--dry-run", "-m", str(tree), "-c",
                            host_file(tmp_path, source=None), "-o", "json")
    assert code == 3
    entry = {entry["name"]: entry for entry in json.loads(out)["vms"]}["a"]
    assert [(step["action"], step["reason"]) for step in entry["steps"]] == [
        ("define", "ownership mark: manifest (none) → a.yaml")]
