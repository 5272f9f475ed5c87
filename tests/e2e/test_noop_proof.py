"""The no-op proof on the real libvirtd, through the installed `reconcile` command: a
pass that changed nothing is replayed by the next identical command, and `virsh setmem
--config`, an edited definition or an autostart flip behind its back is seen by the
next one, which converges it.

A replay takes no VM lock; the lock folder is emptied before each run, so lock files
after it mean the normal pass ran. Every domain of the host is in the proof's digest:
another user's domain changing between two runs makes the second one a normal pass
(which records afresh), so the replay is awaited over a few runs, never assumed.
The in-process tests of every case are tests/integration/test_noop_proof.py's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt
import pytest

from tests.support.command import Runner
from tests.support.domains import MIB, must_read
from tests.support.manifests import Manifests, VMBuilder

TRIES = 5


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _once(run: Runner, lock_dir: Path, state_dir: Path) -> tuple[
        subprocess.CompletedProcess[str], bool]:
    for lock in lock_dir.glob("*.lock") if lock_dir.is_dir() else ():
        lock.unlink()
    proc = run("--once", "--state-dir", str(state_dir), "--lock-timeout", "5", check_exit=0)
    return proc, lock_dir.is_dir() and any(lock_dir.glob("*.lock"))


def _replayed(run: Runner, lock_dir: Path, state_dir: Path) -> str:
    """The output of a replay, within TRIES runs (see the module's docstring): what the
    normal pass before it printed, when one ran. (A pass that converged the host back to
    what an earlier proof recorded makes that proof good again: replayed at once.)"""
    seen = []
    for _ in range(TRIES):
        proc, normal = _once(run, lock_dir, state_dir)
        seen.append(proc.stdout)
        if not normal:
            assert len(seen) == 1 or proc.stdout == seen[-2]
            return proc.stdout
    pytest.fail(f"no replay in {TRIES} runs (is the host's set of domains changing?)\n"
                f"{seen[-1]}")


def test_replayed_until_a_change_behind_its_back(
    conn: libvirt.virConnect, prefix: str, manifests: Manifests, vm: VMBuilder, run: Runner,
    lock_dir: Path, state_dir: Path,
) -> None:
    manifests.write("a.yaml", vm("a", state="stopped"))
    manifests.write("b.yaml", vm("b", state="stopped"))
    first, _ = _once(run, lock_dir, state_dir)
    assert f"{prefix}a  converged" in first.stdout, first.stdout
    replayed = _replayed(run, lock_dir, state_dir)
    assert f"{prefix}a  unchanged" in replayed
    assert list((state_dir / "noop-proofs").glob("*.json"))

    dom = conn.lookupByName(prefix + "a")
    dom.setMemoryFlags(32 * MIB, libvirt.VIR_DOMAIN_AFFECT_CONFIG)  # virsh setmem --config
    after, normal = _once(run, lock_dir, state_dir)
    assert normal and f"{prefix}a  converged" in after.stdout, after.stdout
    assert must_read(conn, prefix + "a").saved.current_memory_kib == 64 * MIB

    _replayed(run, lock_dir, state_dir)
    xml = conn.lookupByName(prefix + "b").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    conn.defineXML(xml.replace(">1</vcpu>", ">2</vcpu>", 1))  # virsh edit
    after, normal = _once(run, lock_dir, state_dir)
    assert normal and f"{prefix}b  converged" in after.stdout, after.stdout
    assert must_read(conn, prefix + "b").saved.vcpus == 1

    _replayed(run, lock_dir, state_dir)
    conn.lookupByName(prefix + "a").setAutostart(1)
    after, normal = _once(run, lock_dir, state_dir)
    assert normal and f"{prefix}a  converged" in after.stdout, after.stdout
    assert not must_read(conn, prefix + "a").autostart
