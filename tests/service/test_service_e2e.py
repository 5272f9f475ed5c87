"""The service end to end: the real `reconcile` command, a real (private) libvirtd, real
guests, a NOTIFY_SOCKET of our own. Each test waits on conditions with deadlines; none
asserts how long anything took (benchmarks/service_latency.py measures that)."""

from __future__ import annotations

import json
import re
import shutil
import signal
from functools import partial
from pathlib import Path

import pytest

from tests.support.command import run_reconcile
from tests.support.domains import Domain
from tests.support.http import http_get
from tests.support.manifests import vm_manifest, write_atomically
from tests.support.sandbox import Host
from tests.support.waiting import wait_until

from .conftest import ServiceFactory
from .support import virsh

pytestmark = pytest.mark.e2e


def _domain(host: Host, name: str) -> Domain | None:
    return host.read(name)


def _running(host: Host, name: str, *, memory_mib: int | None = None) -> Domain | None:
    dom = _domain(host, name)
    if dom is None or not dom.running or not dom.persistent:
        return None
    if memory_mib is not None and dom.memory_mib != memory_mib:
        return None
    return dom


def test_add_edit_delete_with_prune(host: Host, manifests: Path, prefix: str,
                                    start_service: ServiceFactory) -> None:
    keep, vm = f"{prefix}keep", f"{prefix}vm"
    (manifests / "keep.yaml").write_text(vm_manifest(keep))
    service = start_service("--prune", "--resync", "3600",
                            env={"WATCHDOG_USEC": "400000"})
    ready = service.wait_ready()
    # Its own define and start made libvirt send events: the VM may be queued for a look.
    assert ready["STATUS"] in ("1 in sync, 0 pending, 0 failed", "0 in sync, 1 pending, 0 failed")
    kept = wait_until(lambda: _running(host, keep), what=f"{keep} running")
    service.notify.wait_for(lambda m: m.get("STATUS") == "1 in sync, 0 pending, 0 failed")

    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    wait_until(lambda: _running(host, vm, memory_mib=64), what=f"{vm} running")

    write_atomically(manifests / "vm.yaml", vm_manifest(vm, memory="96MiB"))
    wait_until(lambda: _running(host, vm, memory_mib=96), what=f"{vm} with 96 MiB")

    (manifests / "vm.yaml").unlink()
    wait_until(lambda: _domain(host, vm) is None, what=f"{vm} pruned")
    service.wait_log(rf"{vm}: pruned \(destroy, undefine\)")
    # The other VM was never touched: same running instance.
    assert _domain(host, keep) == kept
    service.notify.wait_for(lambda m: m.get("STATUS") == "1 in sync, 0 pending, 0 failed")
    # WATCHDOG_USEC asks for a ping every 0.2 s while the loop runs.
    wait_until(lambda: len(service.notify.with_key("WATCHDOG")) >= 2, what="watchdog pings")
    assert all(m == {"WATCHDOG": "1"} for m in service.notify.with_key("WATCHDOG"))

    assert service.stop() == 0
    assert service.notify.with_key("STOPPING")[-1]["STOPPING"] == "1"


def test_prune_is_refused_without_the_folder_and_beyond_max_prune(
        host: Host, manifests: Path, prefix: str, start_service: ServiceFactory) -> None:
    names = [f"{prefix}{letter}" for letter in "abc"]
    for name in names:
        (manifests / f"{name}.yaml").write_text(vm_manifest(name, state="stopped"))
    service = start_service("--prune", "--max-prune", "1", "--resync", "3600")
    service.wait_ready()
    defined = {name: wait_until(partial(_domain, host, name), what=f"{name} defined")
               for name in names}

    # The whole folder gone (a bad deploy, an unmounted volume): nothing is pruned.
    shutil.rmtree(manifests)
    for name in names:
        service.wait_log(rf"{name}: orphan not pruned: manifest directory .* does not exist")
    assert {name: _domain(host, name) for name in names} == defined

    # Back, with two of the three manifests gone: two orphans exceed --max-prune 1.
    manifests.mkdir()
    (manifests / f"{names[0]}.yaml").write_text(vm_manifest(names[0], state="stopped"))
    for name in names[1:]:
        service.wait_log(rf"{name}: orphan not pruned: 2 orphans exceed --max-prune 1")
    assert {name: _domain(host, name) for name in names} == defined
    assert service.stop() == 0


def test_prune_is_refused_while_the_folder_is_emptied_or_replaced_by_a_file(
        host: Host, manifests: Path, prefix: str, start_service: ServiceFactory) -> None:
    names = [f"{prefix}{letter}" for letter in "ab"]
    for name in names:
        (manifests / f"{name}.yaml").write_text(vm_manifest(name, state="stopped"))
    service = start_service("--prune", "--resync", "3600")
    service.wait_ready()
    defined = {name: wait_until(partial(_domain, host, name), what=f"{name} defined")
               for name in names}

    # Emptied (a checkout gone wrong): every VM is an orphan, and none is pruned.
    for name in names:
        (manifests / f"{name}.yaml").unlink()
    for name in names:
        service.wait_log(rf"{name}: orphan not pruned: manifest directory .* holds no manifests")
    assert {name: _domain(host, name) for name in names} == defined

    # Replaced by a file.
    manifests.rmdir()
    manifests.write_text("not a folder\n")
    service.wait_log(r"manifest path .* is not a directory; nothing will be pruned while it is so")
    service.signal(signal.SIGHUP)  # a full resync looks at every orphan again
    for name in names:
        service.wait_log(rf"{name}: orphan not pruned: manifest path .* is not a directory")
    assert {name: _domain(host, name) for name in names} == defined
    assert service.proc.poll() is None  # still running
    assert service.stop() == 0


def test_destroy_and_undefine_are_undone_by_events(host: Host, manifests: Path, prefix: str,
                                                   start_service: ServiceFactory) -> None:
    vm = f"{prefix}vm"
    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    # A resync an hour away: only libvirt's lifecycle events can explain what follows.
    service = start_service("--resync", "3600")
    service.wait_ready()
    first = wait_until(lambda: _running(host, vm), what=f"{vm} running")

    virsh(host.uri, "destroy", vm)
    again = wait_until(lambda: _running(host, vm), what=f"{vm} started again")
    assert again is not None and first is not None and again.id != first.id
    service.wait_log(rf"{vm}: converged \(start\) after libvirt event '\w+'")

    virsh(host.uri, "undefine", vm)  # leaves it running as a transient domain
    wait_until(lambda: _running(host, vm), what=f"{vm} defined again")
    service.wait_log(rf"{vm}: converged \(.*define.*\) after libvirt event '\w+'")
    assert service.stop() == 0


def test_invalid_edit_leaves_the_vm_alone_until_fixed(host: Host, manifests: Path, prefix: str,
                                                      start_service: ServiceFactory) -> None:
    vm, other = f"{prefix}vm", f"{prefix}other"
    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    service = start_service("--prune", "--resync", "3600")
    service.wait_ready()
    before = wait_until(lambda: _running(host, vm), what=f"{vm} running")

    (manifests / "vm.yaml").write_text(vm_manifest(vm, memory="lots"))
    service.wait_log(r"invalid manifest vm\.yaml\[0\]: spec\.memory: .*left as they are")
    # The service keeps working: a new manifest is acted on. Its file changed after the
    # invalid edit, so by the time it runs the invalid edit has been read and acted on.
    (manifests / "other.yaml").write_text(vm_manifest(other))
    wait_until(lambda: _running(host, other), what=f"{other} running")
    service.wait_log(rf"{vm}: left as it is: its manifest vm\.yaml is invalid")
    assert _domain(host, vm) == before  # neither pruned, nor restarted, nor redefined
    assert service.proc.poll() is None

    (manifests / "vm.yaml").write_text(vm_manifest(vm, memory="80MiB"))
    wait_until(lambda: _running(host, vm, memory_mib=80), what=f"{vm} with 80 MiB")
    service.wait_log(r"manifest vm\.yaml is no longer invalid")
    assert service.stop() == 0


def test_a_manifest_that_does_not_parse_is_not_an_orphan(
        host: Host, manifests: Path, prefix: str, start_service: ServiceFactory) -> None:
    """The name cannot be read from a file that is not YAML: the ownership mark says
    which file the domain came from, so it is left as it is, never pruned."""
    vm = f"{prefix}vm"
    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    (manifests / "keep.yaml").write_text(vm_manifest(f"{prefix}keep", state="stopped"))
    service = start_service("--prune", "--resync", "3600")
    service.wait_ready()
    before = wait_until(lambda: _running(host, vm), what=f"{vm} running")

    (manifests / "vm.yaml").write_text("apiVersion: reconcile/v1\nkind: [\n")
    service.wait_log(r"invalid manifest vm\.yaml\[0\]: not valid YAML")
    service.signal(signal.SIGHUP)  # a full resync looks at every managed domain again
    service.wait_log(rf"{vm}: left as it is: its manifest vm\.yaml is invalid")
    service.notify.wait_for(lambda m: "1 failed" in m.get("STATUS", ""),
                            what="STATUS counting the VM of the invalid manifest as failed")
    assert _domain(host, vm) == before
    assert not [line for line in service.lines if f"{vm}: orphan" in line or
                f"{vm}: pruned" in line], service.log
    assert service.stop() == 0


def test_sighup_resyncs_what_libvirt_sends_no_event_for(host: Host, manifests: Path, prefix: str,
                                                        start_service: ServiceFactory) -> None:
    vm = f"{prefix}vm"
    (manifests / "vm.yaml").write_text(vm_manifest(vm, state="stopped"))
    service = start_service("--resync", "3600")
    service.wait_ready()
    wait_until(lambda: (d := _domain(host, vm)) and d.memory_mib == 64, what=f"{vm} defined")

    virsh(host.uri, "setmaxmem", vm, "80M", "--config")  # libvirt 9.0 sends no event for it
    assert _domain(host, vm).memory_mib == 80  # type: ignore[union-attr]
    service.signal(signal.SIGHUP)
    service.wait_log(r"resync \(SIGHUP\)")
    wait_until(lambda: _domain(host, vm).memory_mib == 64,  # type: ignore[union-attr]
               what=f"{vm} back to 64 MiB")
    assert not _domain(host, vm).running  # type: ignore[union-attr]
    assert service.stop() == 0


def test_sigterm_finishes_the_vm_in_flight(host: Host, manifests: Path, prefix: str,
                                           start_service: ServiceFactory) -> None:
    vm = f"{prefix}vm"
    # The tiny guest ignores ACPI: a shutdown takes the whole stopTimeout, then a destroy.
    (manifests / "vm.yaml").write_text(vm_manifest(vm, stop_timeout=3))
    service = start_service("--resync", "3600")
    service.wait_ready()
    wait_until(lambda: _running(host, vm), what=f"{vm} running")

    (manifests / "vm.yaml").write_text(vm_manifest(vm, state="stopped", stop_timeout=3))
    service.wait_log(rf"{vm}: shutdown \(")
    service.signal(signal.SIGTERM)
    service.notify.wait_for(lambda m: m.get("STOPPING") == "1", what="STOPPING=1")
    assert service.stop() == 0
    dom = _domain(host, vm)
    assert dom is not None and not dom.running and dom.persistent
    assert service.matching(rf"SIGTERM: taking no new work; finishing {vm}")
    assert service.matching(rf"{vm}: converged \(shutdown\)")
    assert service.log.splitlines()[-1].endswith("stopped")


def test_reconnects_after_a_libvirtd_restart(host: Host, manifests: Path, prefix: str,
                                             start_service: ServiceFactory) -> None:
    vm, late = f"{prefix}vm", f"{prefix}late"
    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    service = start_service("--resync", "3600", "--metrics-address", "127.0.0.1:0")
    service.wait_ready()
    first = wait_until(lambda: _running(host, vm), what=f"{vm} running")
    base = "http://" + re.search(r"metrics on http://(\S+)/metrics",  # type: ignore[union-attr]
                                 service.wait_log("metrics on")[0]).group(1)
    assert http_get(base + "/healthz") == (200, "ok\n")
    assert 'reconcile_libvirt_connected{host="default"} 1.0' in http_get(base + "/metrics")[1]

    host.sandbox.stop_daemon()
    service.wait_log(r"lost the libvirt connection .*; reconnecting")
    service.notify.wait_for(lambda m: "libvirt unreachable" in m.get("STATUS", ""),
                            what="STATUS saying libvirt is unreachable")
    code, body = http_get(base + "/healthz")
    assert code == 503 and "libvirt unreachable" in body
    assert 'reconcile_libvirt_connected{host="default"} 0.0' in http_get(base + "/metrics")[1]
    # A change while libvirtd is away is acted on once it is back.
    (manifests / "late.yaml").write_text(vm_manifest(late))
    service.wait_log(r"manifests added: " + re.escape(late))

    host.sandbox.start_daemon()
    wait_until(lambda: _running(host, late), what=f"{late} running after the restart")
    service.wait_log(r"resync \(reconnected\)")
    assert _domain(host, vm) == first  # the guest survived the restart and was left alone
    wait_until(lambda: http_get(base + "/healthz") == (200, "ok\n"), what="/healthz 200 again")
    metrics = http_get(base + "/metrics")[1]
    assert 'reconcile_reconciles_total{host="default",result="converged"}' in metrics
    assert 'reconcile_steps_total{action="start",host="default",outcome="done"}' in metrics
    assert service.stop() == 0


def test_waits_for_a_missing_daemon_at_start(host: Host, manifests: Path, prefix: str,
                                             start_service: ServiceFactory) -> None:
    vm = f"{prefix}vm"
    (manifests / "vm.yaml").write_text(vm_manifest(vm))
    host.sandbox.stop_daemon()
    service = start_service("--resync", "3600")
    service.wait_log(r"libvirt is not reachable: cannot connect to ")
    service.wait_log(r"retrying in ", count=2)
    assert service.proc.poll() is None
    assert not service.notify.with_key("READY")
    assert "libvirt unreachable" in service.notify.with_key("STATUS")[-1]["STATUS"]

    host.sandbox.start_daemon()
    service.wait_ready()
    wait_until(lambda: _running(host, vm), what=f"{vm} running")
    assert service.stop() == 0


def test_once_beside_the_service(host: Host, manifests: Path, prefix: str, tmp_path: Path,
                                 start_service: ServiceFactory) -> None:
    vm = f"{prefix}vm"
    # A restart that takes a while (stopTimeout 2 on a guest that ignores ACPI), so the
    # service and the one-shot run are likely to meet on the VM's lock.
    (manifests / "vm.yaml").write_text(vm_manifest(vm, stop_timeout=2))
    service = start_service("--resync", "3600", "-v")  # -vv: unchanged VMs are logged too
    service.wait_ready()
    wait_until(lambda: _running(host, vm), what=f"{vm} running")

    defined_before = len(service.matching(rf"{vm}: define \("))
    (manifests / "vm.yaml").write_text(vm_manifest(vm, memory="96MiB", stop_timeout=2))
    once = run_reconcile("--once", "-o", "json", "-v", "-m", str(manifests), "-c", host.uri,
                         "--lock-dir", str(tmp_path / "locks"))
    assert once.returncode == 0, once.stderr
    [entry] = [entry for entry in json.loads(once.stdout)["vms"] if entry["name"] == vm]
    assert entry["result"] in ("converged", "unchanged")
    once_defines = [step for step in entry["steps"] if step["action"] == "define"]

    # Everything the service was asked before the SIGHUP is done once it has looked at the
    # VM for the SIGHUP (the queue is FIFO and a name is never in two workers).
    service.signal(signal.SIGHUP)
    service.wait_log(rf"{vm}: (unchanged|converged \(.*\)) after resync \(SIGHUP\)")
    # Whoever took the lock first redefined the VM; the other observed afresh and found it
    # converged. Plans interleaved on the VM would both have defined it.
    service_defines = len(service.matching(rf"{vm}: define \(")) - defined_before
    assert len(once_defines) + service_defines == 1, f"{once.stderr}\n{service.log}"
    assert _running(host, vm, memory_mib=96)
    assert service.stop() == 0
