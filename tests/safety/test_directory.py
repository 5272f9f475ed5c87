"""A manifest directory that is missing, a file, empty, all ignored files or unreadable never
leads to a prune with `reconcile --once --prune`: the orphans are reported, not removed.

The host is libvirt's test driver started from a file holding two managed domains, so every
run begins with the same two orphans; the control run shows that they would be pruned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.command import run_main, run_reconcile, without_dac_override

from .conftest import count

_DOMAIN = """  <domain type='test'>
    <name>{name}</name>
    <metadata><reconcile:managed xmlns:reconcile='urn:reconcile-libvirt:managed:1'/></metadata>
    <memory unit='MiB'>64</memory>
    <vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
  </domain>
"""
ORPHANS = ["dir-a", "dir-b"]


@pytest.fixture
def host(tmp_path: Path) -> str:
    path = tmp_path / "host.xml"
    path.write_text("<node>\n" + "".join(_DOMAIN.format(name=n) for n in ORPHANS) + "</node>\n")
    return f"test://{path}"


def once(capsys: pytest.CaptureFixture[str], host: str, directory: Path) -> tuple[int, str, str]:
    code, out, err = run_main(capsys, "--once", "--prune", "--max-prune", "100",
                              "-m", str(directory), "-c", host, "-o", "json")
    assert "Traceback" not in out + err
    return code, out, err


def test_control_a_complete_directory_prunes(
    capsys: pytest.CaptureFixture[str], host: str, tmp_path: Path,
) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {name: dir-a}\n"
        "spec: {state: absent}\n")
    code, out, _ = once(capsys, host, directory)
    assert code == 0
    assert [(vm["name"], vm["result"]) for vm in json.loads(out)["vms"]] == [
        ("dir-a", "converged"), ("dir-b", "pruned")]


@pytest.mark.parametrize("case", ["missing", "a file"])
def test_no_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], host: str, tmp_path: Path, case: str,
) -> None:
    path = tmp_path / "manifests"
    if case == "a file":
        path.write_text("apiVersion: reconcile/v1\n")
    code, out, err = once(capsys, host, path)
    assert code == 2
    assert out == ""
    reason = "does not exist" if case == "missing" else "is not a directory"
    noun = "directory" if case == "missing" else "path"
    assert err == f"reconcile: error: manifest {noun} {path} {reason}\n"
    count("manifest directory problems that pruned nothing")


@pytest.mark.parametrize("content", [
    {}, {".hidden.yaml": "x", "a.yaml~": "x", ".#a.yaml": "x", "a.swp": "x", "4913": "x",
         "notes.txt": "x", ".git/config.yaml": "x"},
    {"a.yaml": "", "b.yml": "---\n---\n...\n", "c.yaml": "# only comments\n"},
    {"sub/deeper/empty.yaml": ""},
])
def test_an_empty_directory_prunes_nothing(
    capsys: pytest.CaptureFixture[str], host: str, tmp_path: Path, content: dict[str, str],
) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    for name, text in content.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    code, out, err = once(capsys, host, directory)
    assert code == 0
    assert json.loads(out) == {"vms": [], "invalid": [], "orphans": ORPHANS}
    problem = f"manifest directory {directory} holds no manifests"
    assert f"WARNING {problem}\n" in err
    assert f"WARNING nothing pruned: {problem}\n" in err
    count("manifest directory problems that pruned nothing")


def test_an_unreadable_directory_prunes_nothing(host: str, tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a.yaml").write_text("apiVersion: reconcile/v1\n")
    wrapper = without_dac_override("a folder")
    directory.chmod(0)
    try:
        completed = run_reconcile("--once", "--prune", "--max-prune", "100", "-m", str(directory),
                                  "-c", host, "-o", "json", "--lock-dir", str(tmp_path / "locks"),
                                  wrapper=wrapper)
    finally:
        directory.chmod(0o755)
    # like a missing directory: a usage error before libvirt is touched, so nothing pruned
    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr == (
        f"reconcile: error: manifest directory {directory} is not readable\n")
    count("manifest directory problems that pruned nothing")
