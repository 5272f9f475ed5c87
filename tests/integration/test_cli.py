"""The command line in-process on test:///default: output shapes and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.cli import main
from tests.support.command import REPO, run_main

from .conftest import vm


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))


def test_examples_converge_on_the_test_driver(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys, "--once", "-m", str(REPO / "manifests"), "-c", "test:///default",
                              "-o", "json")
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"vms", "invalid", "orphans"}
    assert {vm["result"] for vm in document["vms"]} <= {"converged", "unchanged"}
    for entry in document["vms"]:
        assert set(entry) == {"name", "source", "steps", "result", "error", "addresses", "agent"}


def test_dry_run_exits_3_when_changes_are_pending(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vm("a"))
    code, out, _ = run_main(capsys, "--once", "--dry-run", "-m", str(tmp_path), "-c", "test:///default")
    assert code == 3
    assert "  + a  planned  (a.yaml)" in out
    assert "      define     the domain does not exist" in out
    assert out.endswith("Plan: 1 to create, 0 to update, 0 to restart, 0 to remove; "
                        "0 unchanged.\n")


def test_dry_run_exits_0_when_nothing_is_pending(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vm("a", state="absent"))
    code, out, _ = run_main(capsys, "--once", "--dry-run", "-m", str(tmp_path), "-c", "test:///default")
    assert code == 0
    assert out.endswith("; 1 unchanged.\n")


def test_invalid_manifest_exit_2_and_valid_ones_still_converge(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(vm("good"))
    (tmp_path / "bad.yaml").write_text(vm("bad", vcpus="two"))
    code, out, err = run_main(capsys, "--once", "-m", str(tmp_path), "-c", "test:///default",
                              "-o", "json")
    assert code == 2
    document = json.loads(out)
    assert [v["name"] for v in document["vms"]] == ["good"]
    assert document["vms"][0]["result"] == "converged"
    assert document["invalid"] == [{"file": "bad.yaml", "document": 0, "path": "spec.vcpus",
                                    "error": "'two' is not of type 'integer'"}]
    assert "Traceback" not in err


def test_conflict_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(vm("test"))  # the test driver's own, unmanaged domain
    code, out, _ = run_main(capsys, "--once", "-m", str(tmp_path), "-c", "test:///default")
    assert code == 1
    assert "  ! test  conflict  (t.yaml)" in out
    assert "set spec.adopt: true to take it over" in out


def test_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vm("a"))
    assert run_main(capsys, "validate", "-m", str(tmp_path))[0] == 0
    (tmp_path / "b.yaml").write_text(vm("a"))
    code, out, _ = run_main(capsys, "validate", "-m", str(tmp_path), "-o", "json")
    assert code == 2
    invalid = json.loads(out)["invalid"]
    assert [(i["file"], i["path"]) for i in invalid] == [("a.yaml", "metadata.name"),
                                                         ("b.yaml", "metadata.name")]


@pytest.mark.parametrize("argv, message", [
    (["--once", "-m", "/nonexistent/manifests"], ("manifest directory /nonexistent/manifests "
                                                 "does not exist")),
    (["--once", "--workers", "0"], "must be at least 1"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--dry-run"], "--dry-run needs --once"),
    (["validate", "-m", "/nonexistent/manifests"], "does not exist"),
])
def test_usage_errors_are_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("reconcile: error: ")
    assert message in err


def test_unreachable_libvirt_fails_each_vm(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(vm("a"))
    code, out, err = run_main(capsys, "--once", "-m", str(tmp_path), "-o", "json",
                              "-c", "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    assert code == 1
    (entry,) = json.loads(out)["vms"]
    assert entry["result"] == "failed"
    assert "cannot connect" in entry["error"]
    assert "Traceback" not in err


def test_schema_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "schema")
    assert code == 0 and json.loads(out)["title"] == "VirtualMachine"
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("reconcile ")


def test_manifests_others_may_write_are_warned_about_or_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest = tmp_path / "a.yaml"
    manifest.write_text(vm("a"))
    manifest.chmod(0o666)
    code, out, err = run_main(capsys, "validate", "-m", str(tmp_path))
    assert code == 0
    assert f"file {manifest} is writable by everyone; --strict-permissions refuses it" in err

    code, out, _ = run_main(capsys, "validate", "-m", str(tmp_path), "--strict-permissions",
                            "-o", "json")
    assert code == 2
    assert json.loads(out)["invalid"] == [{
        "file": "a.yaml", "document": None, "path": "",
        "error": f"refused: file {manifest} is writable by everyone (--strict-permissions)"}]

    manifest.chmod(0o644)
    tmp_path.chmod(0o775)
    code, _, err = run_main(capsys, "validate", "-m", str(tmp_path), "--strict-permissions")
    assert code == 2
    tmp_path.chmod(0o755)
    assert run_main(capsys, "validate", "-m", str(tmp_path), "--strict-permissions")[0] == 0


def test_step_log_records_every_step_of_every_run(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(vm("a"))
    log = tmp_path / "steps.jsonl"
    code, _, _ = run_main(capsys, "--once", "-m", str(manifests), "-c", "test:///default",
                          "--step-log", str(log))
    assert code == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["vm"], e["action"], e["phase"]) for e in lines] == [
        ("a", "define", "start"), ("a", "define", "done"),
        ("a", "start", "start"), ("a", "start", "done")]
    assert {e["pid"] for e in lines} == {os.getpid()}
