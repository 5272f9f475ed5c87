"""The no-op proof of `reconcile --once` end to end, in-process on test:///default through
`controller.entry.main` (the console script's own entry): a pass that changed nothing
records a proof, the next identical command replays it, and every change the normal
pass would see makes the next command run the normal pass, which sees it.

How a test tells a replay from a normal pass: the lock folder is emptied before each
run; a normal pass takes every VM's lock (creating its lock file), a replay takes none.
The test driver's state lives as long as one connection to it is open: the `driver`
fixture holds one for the test, so the commands' own connections see the same host.
The unit tests of the digests are tests/unit/test_proof.py's.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from controller import entry, proof
from controller.virt.fingerprint import read_host

from .conftest import vm

URI = "test:///default"
NOTHING = "Applied: 0 created, 0 updated, 0 restarted, 0 removed"  # text output's summary


@pytest.fixture
def driver() -> Iterator[libvirt.virConnect]:
    """One open connection: the test driver's state for this test (gone with it)."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    normal: bool  # the normal pass ran (it took the VMs' locks); False: a replay


@dataclass
class Fixture:
    tmp: Path
    capsys: pytest.CaptureFixture[str]
    conn: libvirt.virConnect

    @property
    def manifests(self) -> Path:
        return self.tmp / "manifests"

    @property
    def locks(self) -> Path:
        return self.tmp / "locks"

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def argv(self, *extra: str) -> list[str]:
        return ["--once", "-m", str(self.manifests), "-c", URI, "--lock-dir", str(self.locks),
                "--state-dir", str(self.state), "--lock-timeout", "0.5", *extra]

    def run(self, *extra: str) -> Run:
        for lock in self.locks.glob("*.lock") if self.locks.is_dir() else ():
            lock.unlink()
        self.capsys.readouterr()
        code = entry.main(self.argv(*extra))
        captured = self.capsys.readouterr()
        normal = self.locks.is_dir() and any(self.locks.glob("*.lock"))
        return Run(code, captured.out, captured.err, normal)

    def proofs(self) -> list[Path]:
        folder = self.state / proof.FOLDER
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def recorded(self, *extra: str) -> Run:
        """Converge, then run once more: a pass that changed nothing, which records."""
        first = self.run(*extra)
        assert first.code == 0, first
        second = self.run(*extra)
        assert second.code == 0 and second.normal, second
        assert NOTHING in second.out or '"unchanged"' in second.out, second
        assert len(self.proofs()) == 1, second
        return second

    def replayed(self, expected: Run, *extra: str) -> None:
        again = self.run(*extra)
        assert not again.normal, again
        assert (again.code, again.out) == (0, expected.out)

    def dom(self, name: str) -> libvirt.virDomain:
        return self.conn.lookupByName(name)


@pytest.fixture
def f(tmp_path: Path, capsys: pytest.CaptureFixture[str],
      driver: libvirt.virConnect) -> Fixture:
    fixture = Fixture(tmp_path, capsys, driver)
    fixture.manifests.mkdir()
    (fixture.manifests / "a.yaml").write_text(vm("pa", state="stopped"))
    (fixture.manifests / "b.yaml").write_text(vm("pb", state="stopped"))
    return fixture


def test_a_pass_that_changed_nothing_is_replayed(f: Fixture) -> None:
    recorded = f.recorded()
    assert "pa" in recorded.out and "unchanged" in recorded.out
    f.replayed(recorded)
    f.replayed(recorded)  # a replay leaves the proof as it was
    (written,) = f.proofs()
    assert oct(written.stat().st_mode & 0o777) == oct(0o600)


def test_json_output_is_replayed_as_recorded(f: Fixture) -> None:
    recorded = f.recorded("-o", "json")
    assert {entry["result"] for entry in json.loads(recorded.out)["vms"]} == {"unchanged"}
    f.replayed(recorded, "-o", "json")


def _setmem_config(f: Fixture) -> None:  # virsh setmem --config pa 32MiB
    f.dom("pa").setMemoryFlags(32 * 1024, libvirt.VIR_DOMAIN_AFFECT_CONFIG)


def _edit_definition(f: Fixture) -> None:  # virsh edit pa: two vCPUs
    xml = f.dom("pa").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    f.conn.defineXML(xml.replace(">1</vcpu>", ">2</vcpu>", 1))


def _start(f: Fixture) -> None:
    f.dom("pa").create()


def _undefine(f: Fixture) -> None:
    f.dom("pa").undefine()


def _autostart(f: Fixture) -> None:
    f.dom("pa").setAutostart(1)


def _manifest_bytes(f: Fixture) -> None:
    (f.manifests / "a.yaml").write_text(vm("pa", state="stopped", memory=96))


def _file_added(f: Fixture) -> None:
    (f.manifests / "c.yaml").write_text(vm("pc", state="stopped"))


@pytest.mark.parametrize(("change", "seen"), [
    (_setmem_config, "converged"), (_edit_definition, "converged"), (_start, "converged"),
    (_undefine, "converged"), (_autostart, "converged"), (_manifest_bytes, "converged"),
    (_file_added, "pc"),
])
def test_a_change_behind_its_back_is_seen_by_the_next_pass(f: Fixture, change: object,
                                                          seen: str) -> None:
    recorded = f.recorded()
    f.replayed(recorded)
    assert callable(change)
    change(f)
    after = f.run()
    assert after.normal, after
    assert after.code == 0 and seen in after.out and after.out != recorded.out, after
    assert NOTHING in f.run().out  # and it converged: the next pass is a no-op


def test_a_running_vm_destroyed_behind_its_back_is_started_again(f: Fixture) -> None:
    (f.manifests / "a.yaml").write_text(vm("pa", state="running"))
    recorded = f.recorded()  # text output: it reads no guest, so it records
    f.replayed(recorded)
    f.dom("pa").destroy()
    after = f.run()
    assert after.normal and "converged" in after.out and "start" in after.out, after
    assert f.dom("pa").isActive()


def test_a_network_a_running_vm_needs_stopped_behind_its_back(f: Fixture) -> None:
    (f.manifests / "a.yaml").write_text(
        vm("pa", state="running") + "  interfaces:\n    - network: default\n")
    recorded = f.recorded()
    f.replayed(recorded)
    f.conn.networkLookupByName("default").destroy()
    after = f.run()
    assert after.normal and after.code == 1 and "network default is not active" in after.out, \
        after


def test_a_mode_change_runs_the_normal_pass_and_its_warning(f: Fixture) -> None:
    recorded = f.recorded()
    f.replayed(recorded)
    (f.manifests / "a.yaml").chmod(0o664)
    after = f.run()
    assert after.normal and "writable by its group" in after.err, after
    assert f.run().normal  # a warning: no proof is recorded
    (f.manifests / "a.yaml").chmod(0o644)
    f.replayed(recorded)  # the tree reads as recorded again: the old proof holds


def test_a_lock_held_by_another_run(f: Fixture) -> None:
    recorded = f.recorded()
    f.replayed(recorded)
    f.locks.mkdir(exist_ok=True)
    with open(f.locks / "pa.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for lock in f.locks.glob("*.lock"):
            if lock.name != "pa.lock":
                lock.unlink()
        code = entry.main(f.argv())
        out = f.capsys.readouterr().out
    assert (f.locks / "pb.lock").exists(), out  # the normal pass ran...
    assert code == 1 and "pa" in out and "lock" in out  # ...and waited for pa's lock


def test_a_different_command_line_has_its_own_proof(f: Fixture) -> None:
    recorded = f.recorded()
    other = f.run("--workers", "2")
    assert other.normal and other.out == recorded.out, other
    assert len(f.proofs()) == 2
    f.replayed(other, "--workers", "2")
    f.replayed(recorded)


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"format": 1}', b"\x00" * 64])
def test_a_corrupt_proof_is_no_proof(f: Fixture, content: bytes) -> None:
    recorded = f.recorded()
    (written,) = f.proofs()
    written.write_bytes(content)
    after = f.run()
    assert after.normal and after.out == recorded.out, after
    assert proof.read_proof(str(written)) is not None  # written again by that pass
    f.replayed(recorded)


def test_a_proof_of_another_host_state_is_not_replayed(f: Fixture) -> None:
    """A proof whose recorded host digest is not the host's now (as if edited by hand)."""
    recorded = f.recorded()
    (written,) = f.proofs()
    data = json.loads(written.read_text())
    data["output"] = "forged"
    data["host"] = "0" * 64
    written.write_text(json.dumps(data))
    after = f.run()
    assert after.normal and after.out == recorded.out, after


@pytest.mark.parametrize("opt_out", ["flag", "env"])
def test_no_proof_turns_it_off(f: Fixture, monkeypatch: pytest.MonkeyPatch,
                               opt_out: str) -> None:
    extra = ("--no-proof",) if opt_out == "flag" else ()
    if opt_out == "env":
        monkeypatch.setenv(proof.DISABLE_ENV, "1")
    for _ in range(3):
        run = f.run(*extra)
        assert run.code == 0 and run.normal, run
    assert f.proofs() == []
    if opt_out == "flag":
        recorded = f.run()  # without the flag: recorded, then replayed
        assert recorded.normal and len(f.proofs()) == 1, recorded
        f.replayed(recorded)
        assert f.run("--no-proof").normal  # a proof exists, and is not used


@pytest.mark.parametrize("opt_out", ["flag", "env"])
def test_no_proof_replays_no_proof_even_one_made_for_it(
        f: Fixture, monkeypatch: pytest.MonkeyPatch, opt_out: str) -> None:
    """A valid proof under the very key of the opted-out command line is not used."""
    recorded = f.recorded()
    (written,) = f.proofs()
    extra = ("--no-proof",) if opt_out == "flag" else ()
    if opt_out == "env":
        monkeypatch.setenv(proof.DISABLE_ENV, "1")
    key = proof.process_key(f.argv(*extra))
    data = json.loads(written.read_text())
    data["key"] = key
    Path(proof.proof_path(str(f.state), key)).write_text(json.dumps(data))
    run = f.run(*extra)
    assert run.normal and run.out == recorded.out, run
    monkeypatch.delenv(proof.DISABLE_ENV, raising=False)
    f.replayed(recorded)  # the proof itself was good


def _disk_retargeted(f: Fixture) -> None:
    link = f.tmp / "images" / "disk.qcow2"
    link.unlink()
    link.symlink_to(f.tmp / "images" / "two.qcow2")


def test_a_disk_path_retargeted_behind_its_back(f: Fixture) -> None:
    images = f.tmp / "images"
    images.mkdir()
    for name in ("one.qcow2", "two.qcow2"):
        (images / name).write_bytes(b"")
    (images / "disk.qcow2").symlink_to(images / "one.qcow2")
    (f.manifests / "a.yaml").write_text(vm("pa", state="stopped") + (
        f"  disks:\n    - source: {images}/disk.qcow2\n      format: raw\n"))
    extra = ("--disk-root", str(images))
    recorded = f.recorded(*extra)
    f.replayed(recorded, *extra)
    _disk_retargeted(f)
    after = f.run(*extra)
    assert after.normal and NOTHING not in after.out, after
    assert "two.qcow2" in f.dom("pa").XMLDesc(0)


def test_in_process_calls_after_a_command_record_nothing(f: Fixture) -> None:
    from controller.cli import main

    f.run()
    assert proof.recorded_key() is None
    for _ in range(2):
        assert main(f.argv()) == 0
    assert f.proofs() == []


# --- the host digest itself ------------------------------------------------------------------

def _network_defined(f: Fixture) -> None:
    f.conn.networkDefineXML("<network><name>pnet</name><bridge name='pbr0'/></network>")


def _network_stopped(f: Fixture) -> None:
    f.conn.networkLookupByName("default").destroy()


def _pool_stopped(f: Fixture) -> None:
    f.conn.storagePoolLookupByName("default-pool").destroy()


def _other_domain_edited(f: Fixture) -> None:  # a domain no manifest names: its mark may go
    dom = f.dom("test")
    f.conn.defineXML(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace(
        "</domain>", "<description>x</description></domain>"))


@pytest.mark.parametrize("change", [
    _setmem_config, _edit_definition, _start, _undefine, _autostart, _network_defined,
    _network_stopped, _pool_stopped, _other_domain_edited,
])
def test_the_host_digest_sees_each_change(f: Fixture, change: object) -> None:
    assert f.run().code == 0  # pa and pb defined
    before = read_host(URI, readonly=False, named=["pa", "pb"])
    assert before is not None
    assert read_host(URI, readonly=False, named=["pa", "pb"]) == before
    assert callable(change)
    change(f)
    assert read_host(URI, readonly=False, named=["pa", "pb"]) not in (before, None)


def test_the_host_digest_of_an_unreachable_host_is_none(tmp_path: Path) -> None:
    assert read_host(f"qemu+unix:///system?socket={tmp_path}/none", readonly=False,
                     named=[]) is None
    assert os.listdir(tmp_path) == []
