"""An invalid document never changes or deletes a domain, even with prune on.

One test:///default connection keeps its domains for the whole property: a first pass
creates managed VMs (running and stopped) and two managed orphans stand by; then every
example corrupts some of the manifests and runs a pass with prune=True, and every domain
must read back exactly as before: same definition, power state and autostart.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import libvirt
from hypothesis import given
from hypothesis import strategies as st

from controller.manifests import load_directory
from controller.model import Result
from controller.virt import Hypervisor

from ..support.rig import Rig
from .checks import check_load
from .conftest import count, fuzz_settings
from .strategies import DISK_ROOT, Entry, broken_manifest, dump, entries, write_entries


def keep(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "labels": {"fuzz": "keep"}},
            "spec": {"memory": 64, "vcpus": 1, "stopTimeout": 0, **spec}}


KEPT = {
    "keep-running": keep("keep-running", autostart=True),
    "keep-stopped": keep("keep-stopped", state="stopped", memory="128MiB", vcpus=2),
    "keep-disks": keep("keep-disks", disks=[{"source": f"{DISK_ROOT}/keep-disks.qcow2"},
                                            {"source": f"{DISK_ROOT}/keep-data.img",
                                             "format": "raw", "bus": "scsi"}],
                       interfaces=[{"network": "default", "mac": "52:54:00:00:00:01"}]),
    "keep-next-boot": keep("keep-next-boot", updatePolicy="next-boot", currentMemory=32),
}
ORPHANS = ("orphan-1", "orphan-2")

State = dict[str, tuple[str, str | None, int, bool, bool]]


def domain_state(hypervisor: Hypervisor) -> State:
    """Every domain: saved XML, live XML, power state, persistence and autostart."""
    state: State = {}
    for dom in hypervisor.connection.conn.listAllDomains(0):
        live = dom.XMLDesc(0) if dom.isActive() else None
        state[dom.name()] = (dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), live,
                             dom.state()[0], bool(dom.isPersistent()), bool(dom.autostart()))
    return state


def write_kept(directory: Path) -> None:
    for name, document in KEPT.items():
        (directory / f"{name}.yaml").write_text(dump(document))


@st.composite
def corrupted(draw: st.DrawFn) -> list[Entry]:
    """The kept manifests with at least one of them corrupted, plus maybe junk files."""
    names = sorted(KEPT)
    broken = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    items = [draw(broken_manifest(KEPT[name], f"{name}.yaml")) if name in broken
             else Entry(f"{name}.yaml", "text", dump(KEPT[name])) for name in names]
    junk = draw(st.lists(st.sampled_from(["bytes", "dir", "dangling", "fifo"]), max_size=2))
    items += [Entry(f"junk-{i}.yaml", kind, b"\xff\x00junk" if kind == "bytes" else "")
              for i, kind in enumerate(junk)]
    return items


def test_baseline_is_converged_and_would_prune(
    rig: Rig, hypervisor: Hypervisor, tmp_path: Path,
) -> None:
    """The control for the property below: a valid pass does prune the orphans."""
    _prepare(rig, hypervisor, tmp_path)
    directory = tmp_path / "valid"
    directory.mkdir()
    write_kept(directory)
    report = rig.run_pass(load_directory(str(directory), disk_roots=[DISK_ROOT]),
                             prune=True, max_prune=100)
    assert {o.name: o.result for o in report.outcomes} == {
        **{name: Result.UNCHANGED for name in KEPT}, **{name: Result.PRUNED for name in ORPHANS}}


def _prepare(rig: Rig, hypervisor: Hypervisor, tmp_path: Path) -> State:
    """Create the kept VMs and the orphans; return the state every example must keep."""
    directory = tmp_path / "setup"
    directory.mkdir()
    write_kept(directory)
    for name in ORPHANS:
        (directory / f"{name}.yaml").write_text(dump(keep(name)))
    first = rig.run_pass(load_directory(str(directory), disk_roots=[DISK_ROOT]),
                            prune=False, max_prune=0)
    assert {o.result for o in first.outcomes} == {Result.CONVERGED}
    for name in ORPHANS:
        (directory / f"{name}.yaml").unlink()
    again = rig.run_pass(load_directory(str(directory), disk_roots=[DISK_ROOT]),
                            prune=False, max_prune=0)
    assert {o.name: o.result for o in again.outcomes} == {name: Result.UNCHANGED for name in KEPT}
    assert again.orphans == sorted(ORPHANS)
    return domain_state(hypervisor)


def test_invalid_documents_never_change_or_delete_a_domain(
    rig: Rig, hypervisor: Hypervisor, tmp_path: Path,
) -> None:
    before = _prepare(rig, hypervisor, tmp_path)
    assert set(before) == {"test", *KEPT, *ORPHANS}

    @fuzz_settings()
    @given(items=corrupted(), prune_limit=st.sampled_from([0, 2, 100]))
    def corrupted_pass_changes_nothing(items: list[Entry], prune_limit: int) -> None:
        directory = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            write_entries(directory, items)
            load = load_directory(str(directory), disk_roots=[DISK_ROOT])
            check_load(load, directory, [DISK_ROOT])
            assert load.invalid, "every example holds at least one invalid document"
            report = rig.run_pass(load, prune=True, max_prune=prune_limit)
        finally:
            shutil.rmtree(directory)
        assert domain_state(hypervisor) == before
        for outcome in report.outcomes:
            if outcome.name in load.specs:
                assert outcome.result is Result.UNCHANGED, outcome
            elif outcome.name in KEPT:  # its manifest is invalid: left as it is, not an orphan
                assert outcome.result is Result.FAILED, outcome
                assert (outcome.error or "").startswith("left as it is: its manifest "), outcome
        # a kept VM is an orphan only when its manifest is gone: a folder took its name
        kinds = {entry.name: entry.kind for entry in items}
        for name in set(KEPT) & set(report.orphans):
            assert kinds[f"{name}.yaml"] == "dir", (name, kinds)
        assert not any(o.result is Result.PRUNED for o in report.outcomes)
        assert set(load.specs) <= set(KEPT)
        count("pass with prune=True over corrupted manifests (domains unchanged)")

    corrupted_pass_changes_nothing()


def test_random_directories_never_touch_other_domains(
    rig: Rig, hypervisor: Hypervisor, tmp_path: Path,
) -> None:
    """Random files beside the kept manifests: a pass acts only on the domains of valid
    manifests, prunes only when the whole directory is valid, and leaves the rest alone,
    including a kept VM whose name a fuzzed document also uses (both are then invalid)."""
    _prepare(rig, hypervisor, tmp_path)

    @fuzz_settings(share=0.5)
    @given(items=entries(max_size=4))
    def junk_pass(items: list[Entry]) -> None:
        before = domain_state(hypervisor)
        directory = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            write_kept(directory)
            write_entries(directory / "fuzz", items)
            load = load_directory(str(directory), disk_roots=[DISK_ROOT])
            report = rig.run_pass(load, prune=True, max_prune=100)
        finally:
            shutil.rmtree(directory)
        after = domain_state(hypervisor)
        complete = not load.invalid and load.problem is None  # only then may a pass prune
        may_change = set(load.specs) - set(KEPT)
        if complete:
            may_change |= set(report.orphans)
        for name, state in before.items():
            if name not in may_change:
                assert after.get(name) == state, name
        pruned = {o.name for o in report.outcomes if o.result is Result.PRUNED}
        assert pruned <= (set(report.orphans) if complete else set())
        for name in set(after) - set(before):  # leave the connection as the next example expects
            dom = hypervisor.connection.conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        count("pass with prune=True over kept manifests plus random files")

    junk_pass()
