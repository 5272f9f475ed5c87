"""Fuzzing the command line in-process: `reconcile validate` and `reconcile --once` over
random manifest directories exit 0, 1 or 2 as the contract says, print what the loader
found, never a traceback, and never prune."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.manifests import load_directory
from tests.conftest import TEST_URI
from tests.support.command import run_main, run_reconcile

from .conftest import count, fuzz_settings
from .strategies import DISK_ROOT, Entry, dump, entries, write_entries

ANCHOR = {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
          "metadata": {"name": "fuzz-anchor"},
          "spec": {"state": "stopped", "memory": 64, "vcpus": 1, "stopTimeout": 0}}


def fresh_directory(base: Path, items: list[Entry]) -> Path:
    directory = Path(tempfile.mkdtemp(dir=base))
    write_entries(directory, items)
    return directory


@fuzz_settings()
@given(items=entries(), output=st.sampled_from(["json", "text"]))
def test_validate_exits_0_or_2_and_reports_what_the_loader_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], items: list[Entry], output: str,
) -> None:
    directory = fresh_directory(tmp_path, items)
    code, out, err = run_main(capsys, "validate", "-m", str(directory), "--disk-root", DISK_ROOT,
                              "-o", output)
    assert "Traceback" not in out + err
    load = load_directory(str(directory), disk_roots=[DISK_ROOT])
    assert code == (2 if load.invalid else 0)
    if output == "json":
        report = json.loads(out)
        assert report["valid"] == sorted(load.specs)
        assert report["invalid"] == [entry.to_json() for entry in load.invalid]
    else:
        assert "\r" not in out
        lines = out.split("\n")
        assert lines.pop() == ""
        summary = lines.pop()
        plural = "" if len(load.specs) == 1 else "s"
        assert summary == (f"{len(load.specs)} valid VM manifest{plural}, "
                           f"{len(load.invalid)} invalid")
        assert lines == [f"invalid: {entry}" for entry in load.invalid] + (
            [f"note: {load.problem}"] if load.problem else [])
    count(f"reconcile validate -o {output} (in-process): random directories")


@fuzz_settings(share=0.5)
@given(items=entries(max_size=4))
def test_once_over_bad_input_never_crashes_nor_prunes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], items: list[Entry],
) -> None:
    directory = fresh_directory(tmp_path, items)
    (directory / "zz-anchor").mkdir(exist_ok=True)
    (directory / "zz-anchor" / "anchor.yaml").write_text(dump(ANCHOR))
    code, out, err = run_main(capsys, "--once", "-m", str(directory), "-c", TEST_URI, "--prune",
                              "--disk-root", DISK_ROOT, "-o", "json")
    assert "Traceback" not in out + err
    load = load_directory(str(directory), disk_roots=[DISK_ROOT])
    report = json.loads(out)
    assert report["invalid"] == [entry.to_json() for entry in load.invalid]
    if load.invalid:
        assert code == 2
    else:
        assert code in (0, 1)
    # every valid manifest is reconciled and reported; nothing else is touched or pruned
    assert sorted(vm["name"] for vm in report["vms"]) == sorted(load.specs)
    assert not {vm["name"] for vm in report["vms"]} & load.invalid_names
    assert all(vm["result"] != "pruned" for vm in report["vms"])
    assert report["orphans"] == []
    if "fuzz-anchor" in load.specs:
        (anchor,) = [vm for vm in report["vms"] if vm["name"] == "fuzz-anchor"]
        assert (anchor["result"], anchor["error"]) == ("converged", None)
    count("reconcile --once --prune (in-process, test:///default): random directories")


@fuzz_settings(share=0.05)
@given(items=entries())
def test_validate_as_a_real_process(tmp_path: Path, items: list[Entry]) -> None:
    """The installed command, as an operator runs it: same result, no traceback."""
    directory = fresh_directory(tmp_path, items)
    completed = run_reconcile("validate", "-m", str(directory), "--disk-root", DISK_ROOT,
                              "-o", "json")
    assert "Traceback" not in completed.stdout + completed.stderr
    load = load_directory(str(directory), disk_roots=[DISK_ROOT])
    assert completed.returncode == (2 if load.invalid else 0), completed.stderr
    report = json.loads(completed.stdout)
    assert report["invalid"] == [entry.to_json() for entry in load.invalid]
    assert report["valid"] == sorted(load.specs)
    count("reconcile validate (child process): random directories")
