"""The no-op proof's pure parts (controller/proof.py, proof_record.why_not_load): every
local input a pass reads changes its digest, the key follows the process, a corrupt
proof is no proof, and a proof is written 0600 and atomically.

The cross-process behaviour, on the real libvirtd, is tests/e2e/test_noop_proof.py's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from controller import proof
from controller.inventory import default_state_dir
from controller.manifests import load_directory
from controller.planner import Situation
from controller.proof_record import why_not_load
from controller.virt.fingerprint import maybe_active

VM = ("apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
      "spec:\n  state: stopped\n  memory: 64MiB\n  vcpus: 1\n{extra}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    (root / "team").mkdir(parents=True)
    (root / "a.yaml").write_text(VM.format(name="a", extra=""))
    (root / "team" / "b.yml").write_text(VM.format(name="b", extra=""))
    return root


# --- the manifest tree -------------------------------------------------------------------

def test_tree_digest_is_stable(tree: Path) -> None:
    assert proof.tree_digest(str(tree)) == proof.tree_digest(str(tree))


@pytest.mark.parametrize("change", [
    "edit", "same size edit", "add", "remove", "rename", "world-writable", "group-writable",
    "folder world-writable", "new folder", "non-manifest file", "chown",
])
def test_tree_digest_sees_every_change_the_loader_reads(tree: Path, change: str) -> None:
    before = proof.tree_digest(str(tree))
    a = tree / "a.yaml"
    if change == "edit":
        a.write_text(VM.format(name="a", extra="  autostart: true\n"))
    elif change == "same size edit":
        info = a.stat()
        a.write_text(a.read_text().replace("64MiB", "65MiB"))
        os.utime(a, ns=(info.st_atime_ns, info.st_mtime_ns))  # size and mtime as before
    elif change == "add":
        (tree / "c.yaml").write_text(VM.format(name="c", extra=""))
    elif change == "remove":
        (tree / "team" / "b.yml").unlink()
    elif change == "rename":
        a.rename(tree / "a2.yaml")
    elif change == "world-writable":
        a.chmod(0o646)
    elif change == "group-writable":
        a.chmod(0o664)
    elif change == "folder world-writable":
        (tree / "team").chmod(0o757)
    elif change == "new folder":
        (tree / "more").mkdir()
    elif change == "non-manifest file":
        (tree / "README").write_text("notes")
    elif change == "chown":
        if os.geteuid() != 0:
            pytest.skip("chown needs root")
        os.chown(a, 65534, -1)
    assert proof.tree_digest(str(tree)) != before


def test_tree_digest_skips_hidden_folders_as_the_loader_does(tree: Path) -> None:
    (tree / ".git").mkdir()
    before = proof.tree_digest(str(tree))
    (tree / ".git" / "x.yaml").write_text(VM.format(name="x", extra=""))
    assert proof.tree_digest(str(tree)) == before
    assert "x" not in load_directory(str(tree)).specs


def test_tree_digest_of_a_missing_directory(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    assert proof.tree_digest(missing) == proof.tree_digest(missing)
    (tmp_path / "nope").mkdir()
    assert proof.tree_digest(missing) != proof.tree_digest(str(tmp_path / "other"))


# --- disk paths --------------------------------------------------------------------------

def test_paths_digest_follows_symlinks_and_files(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "one.qcow2").write_bytes(b"")
    (root / "two.qcow2").write_bytes(b"")
    link = root / "disk.qcow2"
    link.symlink_to(root / "one.qcow2")
    sources, roots = [str(link)], [str(root)]
    before = proof.paths_digest(sources, roots)
    assert proof.paths_digest(sources, roots) == before
    link.unlink()
    link.symlink_to(root / "two.qcow2")
    retargeted = proof.paths_digest(sources, roots)
    assert retargeted != before
    (root / "two.qcow2").unlink()
    assert proof.paths_digest(sources, roots) != retargeted  # now dangling: "not created yet"
    (root / "two.qcow2").mkdir()
    assert proof.paths_digest(sources, roots) not in (before, retargeted)


def test_paths_digest_sees_a_disk_root_moved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "real")
    before = proof.paths_digest([], [str(tmp_path / "root")])
    (tmp_path / "root").unlink()
    (tmp_path / "root").mkdir()
    assert proof.paths_digest([], [str(tmp_path / "root")]) != before


def test_the_loader_reports_every_disk_path_it_resolved(tree: Path, tmp_path: Path) -> None:
    disk = tmp_path / "images" / "d.qcow2"
    disk.parent.mkdir()
    (tree / "d.yaml").write_text(VM.format(name="d", extra=(
        f"  disks:\n    - source: {disk}\n    - source: {tmp_path}/elsewhere.qcow2\n")))
    load = load_directory(str(tree), disk_roots=[str(disk.parent)])
    assert load.disk_sources == {str(disk), f"{tmp_path}/elsewhere.qcow2"}
    assert load.invalid  # the one outside the roots: such a load records no proof anyway


# --- the key -----------------------------------------------------------------------------

def test_process_key_follows_argv_cwd_and_environment(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    argv = ["--once", "-m", "m"]
    key = proof.process_key(argv)
    assert proof.process_key(list(argv)) == key
    assert proof.process_key([*argv, "-o", "json"]) != key
    monkeypatch.setenv("RECONCILE_LOCK_DIR", "/elsewhere")
    assert proof.process_key(argv) != key
    monkeypatch.delenv("RECONCILE_LOCK_DIR")
    monkeypatch.setenv("NO_COLOR", "1")
    assert proof.process_key(argv) != key
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("SOME_UNRELATED_VARIABLE", "x")  # e.g. systemd's INVOCATION_ID
    assert proof.process_key(argv) == key
    monkeypatch.chdir(tmp_path)
    assert proof.process_key(argv) != key


def test_process_key_follows_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    key = proof.process_key(["--once"])
    monkeypatch.setattr(proof, "__version__", "99.0")
    assert proof.process_key(["--once"]) != key


def test_code_digest_follows_every_file_of_the_package(tmp_path: Path) -> None:
    package = tmp_path / "controller"
    (package / "virt" / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "virt" / "b.py").write_text("y = 2\n")
    before = proof.code_digest(str(package))
    (package / "virt" / "__pycache__" / "b.pyc").write_bytes(b"cache")
    assert proof.code_digest(str(package)) == before  # bytecode is not code
    info = (package / "virt" / "b.py").stat()
    os.utime(package / "virt" / "b.py", ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    touched = proof.code_digest(str(package))
    assert touched != before
    (package / "c.py").write_text("")
    assert proof.code_digest(str(package)) not in (before, touched)


def test_the_real_package_is_what_the_key_digests() -> None:
    assert os.path.exists(os.path.join(proof.PACKAGE_DIR, "proof.py"))
    assert os.path.exists(os.path.join(proof.PACKAGE_DIR, "schemas"))


def test_state_dir_as_the_cli_and_the_inventory_find_it(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    for env in ({}, {"RECONCILE_STATE_DIR": str(tmp_path)}, {"XDG_STATE_HOME": "/x"}):
        for name in ("RECONCILE_STATE_DIR", "XDG_STATE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        if "RECONCILE_STATE_DIR" in env:  # proof.py and the inventory share statedir.py
            assert default_state_dir() == str(tmp_path)
        assert proof.state_dir_of(["--once"]) == default_state_dir()
    assert proof.state_dir_of(["--once", "--state-dir", "/a"]) == "/a"
    assert proof.state_dir_of(["--state-dir=/a", "--once", "--state-dir", "/b"]) == "/b"


# --- the file ----------------------------------------------------------------------------

def _proof(key: str = "k" * 40, output: str = "out") -> proof.Proof:
    return proof.Proof(key=key, manifests="/m", tree="t", sources=["/s"], roots=["/r"],
                       paths="p", uri=None, readonly=False, named=["a"], locks=["/l/a.lock"],
                       host="h", output=output)


def test_a_proof_is_written_0600_and_read_back(tmp_path: Path) -> None:
    written = _proof(output="  a  unchanged\n→ é")
    proof.write_proof(str(tmp_path), written)
    path = proof.proof_path(str(tmp_path), written.key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path / proof.FOLDER) == [os.path.basename(path)]  # no temporary
    read = proof.read_proof(path)
    assert read is not None and read.to_json() == written.to_json()


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe", b"[]", b'{"format": 1}', b"null",
    json.dumps({**_proof().to_json(), "format": 0}).encode(),
    json.dumps({**_proof().to_json(), "named": "a"}).encode(),
    json.dumps({**_proof().to_json(), "readonly": "no"}).encode(),
    json.dumps({**_proof().to_json(), "uri": 3}).encode(),
])
def test_a_corrupt_proof_is_no_proof(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content)
    assert proof.read_proof(str(path)) is None


def test_an_unreadable_or_missing_proof_is_no_proof(tmp_path: Path) -> None:
    assert proof.read_proof(str(tmp_path / "missing.json")) is None
    assert proof.read_proof(str(tmp_path)) is None  # a folder


def test_only_the_newest_proofs_are_kept(tmp_path: Path) -> None:
    for index in range(proof.MAX_PROOFS + 3):
        proof.write_proof(str(tmp_path), _proof(key=f"{index:040d}"))
        path = proof.proof_path(str(tmp_path), f"{index:040d}")
        os.utime(path, ns=(index * 10**9, index * 10**9))
    proof.write_proof(str(tmp_path), _proof(key="f" * 40))
    kept = sorted(os.listdir(tmp_path / proof.FOLDER))
    assert len(kept) == proof.MAX_PROOFS
    assert f"{0:040d}.json" not in kept and f"{'f' * 40}.json" in kept


def test_replay_needs_once_and_no_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    assert proof.replay(["validate"]) is None
    assert proof.replay(["--once", "--no-proof"]) is None
    monkeypatch.setenv(proof.DISABLE_ENV, "1")
    assert proof.replay(["--once"]) is None


def test_locks_held(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "a.lock"
    assert not proof.locks_held([str(path)])  # no file: nobody holds it
    with open(path, "w") as held:
        assert not proof.locks_held([str(path)])
        fcntl.flock(held, fcntl.LOCK_EX)
        assert proof.locks_held([str(tmp_path / "b.lock"), str(path)])


# --- which loads qualify, and what the fingerprints assume ----------------------------------

@pytest.mark.parametrize(("extra", "qualifies"), [
    ("", True),
    ("  machine: q35\n", False),
    ("  disks:\n    - volume: v\n      pool: default\n      size: 1GiB\n", False),
    ("  cloudInit:\n    pool: default\n    userData: '#cloud-config'\n", False),
    ("  cpu:\n    model: Haswell\n", False),
    ("  cpu:\n    mode: host-passthrough\n", True),
    ("  kernel:\n    path: /var/lib/libvirt/boot/vmlinuz\n", False),
    ("  kernel: null\n", True),
    ("  interfaces:\n    - network: default\n", True),  # the fingerprint reads networks
])
def test_which_loads_qualify(tree: Path, extra: str, qualifies: bool) -> None:
    (tree / "a.yaml").write_text(VM.format(name="a", extra=extra))
    load = load_directory(str(tree))
    assert not load.invalid, load.invalid
    assert (why_not_load(load) is None) is qualifies


def test_loads_with_hosts_images_warnings_or_invalid_manifests_do_not_qualify(
        tree: Path) -> None:
    (tree / "hosts.yaml").write_text("apiVersion: reconcile/v1\nkind: Hosts\nhosts:\n"
                                     "  h: qemu:///system\n")
    assert why_not_load(load_directory(str(tree))) is not None
    (tree / "hosts.yaml").unlink()
    (tree / "bad.yaml").write_text("kind: [")
    assert why_not_load(load_directory(str(tree))) is not None
    (tree / "bad.yaml").unlink()
    (tree / "a.yaml").chmod(0o666)
    assert why_not_load(load_directory(str(tree))) is not None  # a warning


def test_what_the_planner_observes_is_what_the_fingerprint_covers() -> None:
    """A tripwire: the fingerprints cover the domains and the networks (`blocked`: the
    networks a VM's interfaces name), and the proof is refused for the rest (copies on
    other hosts and moves, machines, CPU models, storage, pools of volume disks). A new
    input of the planner must be added to virt/fingerprint.py or to why_not_load before
    this test is updated."""
    assert [field.name for field in dataclasses.fields(Situation)] == [
        "host", "here", "copies", "unknown", "machines", "storage", "cpu_models",
        "blocked", "move_storage"]


@pytest.mark.parametrize(("xml", "active"), [
    ("<domain type='kvm'>\n  <name>a</name>", False),
    ("<domain type='kvm' id='7'>\n  <name>a</name>", True),
    ("<domain type='qemu' id='-1'><name>a</name>", True),  # erring towards reading more
    ("<domain type='kvm'><name>id='3'</name>", False),
])
def test_maybe_active(xml: str, active: bool) -> None:
    assert maybe_active(xml) is active


@pytest.mark.parametrize("document", [
    "apiVersion: reconcile/v1\nkind: Network\nmetadata: {name: lab}\nspec: {mode: isolated}\n",
    "apiVersion: reconcile/v1\nkind: StoragePool\nmetadata: {name: store}\n"
    "spec: {path: /var/lib/libvirt/images/store}\n",
])
def test_loads_with_networks_or_pools_do_not_qualify(tree: Path, document: str) -> None:
    assert why_not_load(load_directory(str(tree))) is None
    (tree / "resource.yaml").write_text(document)
    load = load_directory(str(tree))
    assert not load.invalid, load.invalid
    assert why_not_load(load) is not None
