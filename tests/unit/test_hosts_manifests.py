"""hosts.yaml, spec.host and spec.moveStrategy in the loader; --host NAME[=URI] on the
command line. No hypervisor is needed: every case stops before a connection is opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.cli import host_options, main
from controller.errors import UsageError
from controller.manifests import Invalid, LoadResult, load_directory
from controller.model import MoveStrategy

URI_PATTERN = "'^[A-Za-z][A-Za-z0-9+.-]*:[^\\\\u0000-\\\\u0020\\\\u007f]*$'"
NAME_PATTERN = "'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"
UNKNOWN_KVM_9 = "host 'kvm-9' is not named in hosts.yaml nor by --host NAME=URI"
TWO_HOSTS = {"kvm-1": "qemu+ssh://root@kvm-1.example/system",
             "kvm-2": "qemu+tls://kvm-2.example/system"}


def hosts_doc(hosts: Any = None, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "Hosts",
            "hosts": TWO_HOSTS if hosts is None else hosts, **extra}


def vm(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": name},
            "spec": {"memory": 64, "vcpus": 1, **spec}}


def write(directory: Path, relative: str, *documents: Any) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")


def load(directory: Path, extra_hosts: dict[str, str] | None = None) -> LoadResult:
    return load_directory(str(directory), extra_hosts=extra_hosts)


# --- hosts.yaml ----------------------------------------------------------------------------

def test_hosts_yaml_names_hosts_and_places_vms(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc())
    write(manifest_dir, "vms.yaml", vm("a", host="kvm-1"), vm("b", host="kvm-2"), vm("c"))
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.hosts == TWO_HOSTS
    assert result.documents == 3  # VirtualMachine documents only
    assert {name: spec.host for name, spec in result.specs.items()} == {
        "a": "kvm-1", "b": "kvm-2", "c": None}
    assert {spec.move_strategy for spec in result.specs.values()} == {MoveStrategy.COLD}
    assert result.prune_safe is True


def test_without_hosts_yaml_there_are_no_hosts(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("a"))
    result = load(manifest_dir)
    assert (result.hosts, result.invalid, result.specs["a"].host) == ({}, [], None)


@pytest.mark.parametrize(("hosts", "path", "error"), [
    ({"kvm-1": "not a uri"}, "hosts.kvm-1", f"'not a uri' does not match {URI_PATTERN}"),
    ({"kvm-1": "kvm-1.example/system"}, "hosts.kvm-1",
     f"'kvm-1.example/system' does not match {URI_PATTERN}"),
    ({"kvm-1": "qemu+ssh://kvm-1/system\x7f"}, "hosts.kvm-1",
     f"'qemu+ssh://kvm-1/system\\x7f' does not match {URI_PATTERN}"),
    ({"kvm-1": "q:"}, "hosts.kvm-1", "'q:' is too short"),
    ({"kvm-1": 5}, "hosts.kvm-1", "5 is not of type 'string'"),
    ({"-kvm": "test:///default"}, "hosts", f"'-kvm' does not match {NAME_PATTERN}"),
    ({"kvm 1": "test:///default"}, "hosts", f"'kvm 1' does not match {NAME_PATTERN}"),
    ({"k" * 65: "test:///default"}, "hosts", f"'{'k' * 65}' does not match {NAME_PATTERN}"),
    (["kvm-1"], "hosts", "['kvm-1'] is not of type 'object'"),
], ids=["spaces", "no-scheme", "control-char", "too-short", "not-a-string", "leading-dash",
        "name-space", "name-too-long", "a-list"])
def test_invalid_hosts_yaml(manifest_dir: Path, hosts: Any, path: str, error: str) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc(hosts))
    write(manifest_dir, "a.yaml", vm("a"))
    result = load(manifest_dir)
    assert result.invalid == [Invalid("hosts.yaml", 0, path, error)]
    assert result.hosts == {}
    assert list(result.specs) == ["a"]  # a VM without spec.host is still valid
    assert result.prune_safe is False


def test_hosts_yaml_extra_key_and_missing_hosts(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc(extra="x"))
    write(manifest_dir, "a.yaml", vm("a"))
    assert load(manifest_dir).invalid == [
        Invalid("hosts.yaml", 0, "extra", "unknown field(s) ('extra' was unexpected)")]
    write(manifest_dir, "hosts.yaml", {"apiVersion": "reconcile/v1", "kind": "Hosts"})
    assert load(manifest_dir).invalid == [
        Invalid("hosts.yaml", 0, "hosts", "'hosts' is a required property")]
    write(manifest_dir, "hosts.yaml", hosts_doc(apiVersion="reconcile/v2"))
    assert [(i.path, i.document) for i in load(manifest_dir).invalid] == [("apiVersion", 0)]


def test_invalid_hosts_yaml_leaves_the_vms_placed_on_its_hosts_alone(
        manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc({"kvm-1": "bad uri"}))
    write(manifest_dir, "a.yaml", vm("a", host="kvm-1"))
    write(manifest_dir, "b.yaml", vm("b"))
    result = load(manifest_dir)
    assert [(i.file, i.path) for i in result.invalid] == [("hosts.yaml", "hosts.kvm-1"),
                                                          ("a.yaml", "spec.host")]
    assert result.invalid_names == {"a"}  # never treated as absent
    assert list(result.specs) == ["b"]
    assert result.prune_safe is False


@pytest.mark.parametrize("relative", ["sub/hosts.yaml", "other.yaml", "hosts.yml"])
def test_a_hosts_document_outside_hosts_yaml_is_invalid(manifest_dir: Path,
                                                         relative: str) -> None:
    write(manifest_dir, relative, hosts_doc())
    write(manifest_dir, "a.yaml", vm("a", host="kvm-1"))
    result = load(manifest_dir)
    assert result.invalid == [
        Invalid(relative, 0, "kind",
                "a Hosts document belongs in hosts.yaml at the root of the manifest tree"),
        Invalid("a.yaml", 0, "spec.host",
                "host 'kvm-1' is not named in hosts.yaml nor by --host NAME=URI")]
    assert result.hosts == {}
    assert result.invalid_names == {"a"}


def test_a_hosts_document_among_vms_outside_hosts_yaml(manifest_dir: Path) -> None:
    write(manifest_dir, "all.yaml", vm("a"), hosts_doc(), vm("b"))
    result = load(manifest_dir)
    assert [(i.file, i.document, i.path) for i in result.invalid] == [("all.yaml", 1, "kind")]
    assert sorted(result.specs) == ["a", "b"]
    assert result.prune_safe is False


def test_two_hosts_documents_the_second_is_invalid(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc(), hosts_doc({"kvm-3": "test:///default"}))
    write(manifest_dir, "a.yaml", vm("a", host="kvm-3"))
    result = load(manifest_dir)
    assert result.invalid == [
        Invalid("hosts.yaml", 1, "kind", "hosts.yaml holds more than one Hosts document"),
        Invalid("a.yaml", 0, "spec.host",
                "host 'kvm-3' is not named in hosts.yaml nor by --host NAME=URI")]
    assert result.hosts == TWO_HOSTS
    assert result.prune_safe is False


@pytest.mark.parametrize("first", [{}, {"kvm-1": "bad uri"}], ids=["empty", "invalid"])
def test_two_hosts_documents_whatever_the_first_holds(manifest_dir: Path,
                                                      first: dict[str, str]) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc(first), hosts_doc({"kvm-3": "test:///x"}))
    write(manifest_dir, "a.yaml", vm("a"))
    result = load(manifest_dir)
    assert Invalid("hosts.yaml", 1, "kind",
                   "hosts.yaml holds more than one Hosts document") in result.invalid
    assert result.hosts == {}


def test_hosts_yaml_with_vms_in_the_same_file(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc(), vm("a", host="kvm-2"))
    result = load(manifest_dir)
    assert (result.invalid, result.hosts, result.specs["a"].host) == ([], TWO_HOSTS, "kvm-2")


def test_only_hosts_yaml_is_an_empty_tree_that_never_prunes(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc())
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.documents == 0
    assert result.problem == f"manifest directory {manifest_dir} holds no manifests"
    assert result.hosts == TWO_HOSTS
    assert result.prune_safe is False


# --- spec.host and spec.moveStrategy ---------------------------------------------------------

def test_spec_host_naming_an_unknown_host_is_invalid(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc())
    write(manifest_dir, "a.yaml", vm("a", host="kvm-9"))
    write(manifest_dir, "b.yaml", vm("b", host="kvm-1"))
    result = load(manifest_dir)
    assert result.invalid == [Invalid("a.yaml", 0, "spec.host", UNKNOWN_KVM_9)]
    assert result.invalid_names == {"a"}
    assert list(result.specs) == ["b"]
    assert result.prune_safe is False


def test_spec_host_without_any_hosts_is_invalid(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("a", host="kvm-9"))
    assert load(manifest_dir).invalid == [Invalid("a.yaml", 0, "spec.host", UNKNOWN_KVM_9)]


def test_extra_hosts_name_a_host(manifest_dir: Path) -> None:
    write(manifest_dir, "a.yaml", vm("a", host="kvm-9"))
    result = load(manifest_dir, {"kvm-9": "test:///default"})
    assert result.invalid == []
    assert result.hosts == {"kvm-9": "test:///default"}
    assert result.specs["a"].host == "kvm-9"
    assert result.prune_safe is True


def test_extra_hosts_add_to_and_override_hosts_yaml(manifest_dir: Path) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc())
    write(manifest_dir, "a.yaml", vm("a", host="kvm-9"))
    result = load(manifest_dir, {"kvm-9": "test:///default", "kvm-2": "qemu:///system"})
    assert result.invalid == []
    assert result.hosts == {"kvm-1": TWO_HOSTS["kvm-1"], "kvm-2": "qemu:///system",
                            "kvm-9": "test:///default"}


@pytest.mark.parametrize(("host", "error"), [
    ("kvm 1", f"'kvm 1' does not match {NAME_PATTERN}"),
    ("", f"'' does not match {NAME_PATTERN}"),
    (3, "3 is not of type 'string'"),
])
def test_spec_host_must_be_a_host_name(manifest_dir: Path, host: Any, error: str) -> None:
    write(manifest_dir, "a.yaml", vm("a", host=host))
    assert load(manifest_dir).invalid == [Invalid("a.yaml", 0, "spec.host", error)]


@pytest.mark.parametrize(("value", "strategy"), [("cold", MoveStrategy.COLD),
                                                 ("live", MoveStrategy.LIVE)])
def test_move_strategy(manifest_dir: Path, value: str, strategy: MoveStrategy) -> None:
    write(manifest_dir, "hosts.yaml", hosts_doc())
    write(manifest_dir, "a.yaml", vm("a", host="kvm-1", moveStrategy=value))
    result = load(manifest_dir)
    assert result.invalid == []
    assert result.specs["a"].move_strategy is strategy


@pytest.mark.parametrize("value", ["warm", "Live", True, None])
def test_move_strategy_is_an_enum(manifest_dir: Path, value: Any) -> None:
    write(manifest_dir, "a.yaml", vm("a", moveStrategy=value))
    result = load(manifest_dir)
    assert [(i.file, i.document, i.path) for i in result.invalid] == [
        ("a.yaml", 0, "spec.moveStrategy")]
    assert result.invalid_names == {"a"}


# --- --host NAME[=URI] -----------------------------------------------------------------------

@pytest.mark.parametrize(("entries", "expected"), [
    ([], ({}, None)),
    (["kvm-1=test:///default", "kvm-2=qemu+tcp://10.0.0.2/system"],
     ({"kvm-1": "test:///default", "kvm-2": "qemu+tcp://10.0.0.2/system"}, None)),
    (["kvm-1"], ({}, "kvm-1")),
    (["kvm-1", "kvm-1=test:///default", "kvm-1"], ({"kvm-1": "test:///default"}, "kvm-1")),
    (["a=qemu+ssh://root@a/system?keyfile=/k"], ({"a": "qemu+ssh://root@a/system?keyfile=/k"},
                                                 None)),
    (["a=test:///x", "a=test:///y"], ({"a": "test:///y"}, None)),  # the last one wins
])
def test_host_options(entries: list[str],
                      expected: tuple[dict[str, str], str | None]) -> None:
    assert host_options(entries) == expected


@pytest.mark.parametrize(("entries", "message"), [
    (["-kvm=test:///default"],
     "--host -kvm=test:///default: a host name is letters, digits, '_', '.', '-'"),
    (["=test:///default"],
     "--host =test:///default: a host name is letters, digits, '_', '.', '-'"),
    (["kvm 1"], "--host kvm 1: a host name is letters, digits, '_', '.', '-'"),
    (["kvm-1="], "--host kvm-1=: the URI is missing"),
    (["kvm-1", "kvm-2"], "--host NAME restricts a run to one host, not kvm-1, kvm-2"),
])
def test_host_options_usage_errors(entries: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        host_options(entries)
    assert str(caught.value) == message


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tree(manifest_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("RECONCILE_STATE_DIR", str(tmp_path / "state"))
    write(manifest_dir, "hosts.yaml", hosts_doc())
    write(manifest_dir, "a.yaml", vm("a", host="kvm-1"))
    return manifest_dir


@pytest.mark.parametrize(("argv", "message"), [
    (["--once", "--host", "kvm-1="], "--host kvm-1=: the URI is missing"),
    (["--once", "--dry-run", "--host", "kvm-1", "--host", "kvm-2"],
     "--host NAME restricts a run to one host, not kvm-1, kvm-2"),
    (["--once", "--host", "kvm-9"],
     "--host kvm-9: no such host in hosts.yaml or --host NAME=URI"),
    (["status", "--host", "kvm-9"],
     "--host kvm-9: no such host in hosts.yaml or --host NAME=URI"),
    (["validate", "--host", "bad name=test:///default"],
     "--host bad name=test:///default: a host name is letters, digits, '_', '.', '-'"),
    (["status", "--host", "a", "--host", "b"],
     "--host NAME restricts a run to one host, not a, b"),
])
def test_host_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tree: Path,
                                  argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv, "-m", str(tree))
    assert (code, out) == (2, "")
    assert err == f"reconcile: error: {message}\n"


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_connect_timeout_must_be_positive(capsys: pytest.CaptureFixture[str], tree: Path,
                                          value: str) -> None:
    code, out, err = run(capsys, "--once", "-m", str(tree), "--connect-timeout", value)
    assert (code, out) == (2, "")
    assert err.startswith("reconcile: error: argument --connect-timeout: ")


def test_validate_with_hosts(capsys: pytest.CaptureFixture[str], tree: Path) -> None:
    write(tree, "b.yaml", vm("b", host="kvm-9"))
    code, out, _ = run(capsys, "validate", "-m", str(tree), "-o", "json")
    assert code == 2
    assert out == ('{"valid": ["a"], "invalid": [{"file": "b.yaml", "document": 0, '
                   f'"path": "spec.host", "error": "{UNKNOWN_KVM_9}"}}], "notes": []}}\n')
    code, out, _ = run(capsys, "validate", "-m", str(tree), "-o", "json",
                       "--host", "kvm-9=test:///default")
    assert code == 0
    assert out == '{"valid": ["a", "b"], "invalid": [], "notes": []}\n'
    (tree / "b.yaml").unlink()
    code, out, _ = run(capsys, "validate", "-m", str(tree), "--host", "kvm-1")
    assert (code, out) == (0, "1 valid VM manifest, 0 invalid\n")
