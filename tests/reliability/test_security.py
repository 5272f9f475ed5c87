"""Security basics: the service listens on nothing but its metrics address, on loopback
unless told otherwise; `--dry-run`, `status` and `export` need no more than a read-only
libvirt connection, while a real run over one fails clearly."""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.service.support import ServiceProcess
from tests.support.command import OnceRunner, clean_env, describe, run_reconcile
from tests.support.domains import snapshot
from tests.support.manifests import Manifests, vm_manifest
from tests.support.sandbox import Host
from tests.support.waiting import wait_until

from .conftest import FIGURES
from .support import listening_sockets

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _other_addresses() -> list[str]:
    """This host's addresses that are not loopback nor link-local (as `ip` lists them)."""
    proc = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True,
                          timeout=30, check=False)
    found = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] in ("inet", "inet6"):
            address = ipaddress.ip_address(fields[3].split("/")[0])
            if not (address.is_loopback or address.is_link_local):
                found.append(str(address))
    return found


def _refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("metrics", [":{port}", "{port}", None],
                         ids=["colon-port", "port-only", "no-metrics"])
def test_the_service_listens_on_loopback_only(
    box: Host, prefix: str, manifests: Manifests, lock_dir: Path, metrics: str | None,
) -> None:
    manifests.write("vm.yaml", vm_manifest(prefix + "vm", state="stopped"))
    port = _free_port()
    args: tuple[str, ...] = ("--resync", "3600")
    if metrics is not None:
        args += ("--metrics-address", metrics.format(port=port))
    service = ServiceProcess(manifests=manifests.path, uri=box.uri, lock_dir=lock_dir,
                             args=args)
    others = _other_addresses()
    try:
        service.wait_ready()
        listening = listening_sockets(service.proc.pid)
        if metrics is None:
            assert listening == [], service.log
        else:
            assert listening == [f"tcp 127.0.0.1:{port}"], service.log
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as reply:
                assert (reply.status, reply.read()) == (200, b"ok\n")
            for address in others:
                assert _refused(address, port), f"{address}:{port} accepted a connection"
    finally:
        code = service.stop()
    assert code == 0, service.log
    FIGURES.setdefault("sockets the service listens on", []).append(
        f"--metrics-address {metrics.format(port='PORT') if metrics else '(none)'}: "
        f"{', '.join(listening) or 'none'}"
        + (f" (refused on {len(others)} other host address(es))" if metrics else ""))


def test_dry_run_status_and_export_need_only_a_read_only_connection(
    box: Host, prefix: str, manifests: Manifests, once: OnceRunner,
) -> None:
    read_only = f"qemu+unix:///system?socket={box.sandbox.socket_dir}/libvirt-sock-ro"
    same, drift, new = prefix + "same", prefix + "drift", prefix + "new"
    manifests.write("same.yaml", vm_manifest(same))  # running: its live XML is read too
    manifests.write("drift.yaml", vm_manifest(drift, state="stopped"))
    once("-c", box.uri, check_exit=0)
    manifests.write("drift.yaml", vm_manifest(drift, state="stopped", memory="80MiB"))
    manifests.write("new.yaml", vm_manifest(new, state="stopped"))
    before = snapshot(box.conn, prefix)

    def both(*args: str, check_exit: int) -> str:
        """The same command over the read-write and the read-only socket: same output."""
        outputs = []
        for uri in (box.uri, read_only):
            proc = run_reconcile(*args, "-c", uri, env=clean_env())
            assert proc.returncode == check_exit and "Traceback" not in proc.stderr, \
                describe(proc)
            outputs.append(proc.stdout)
        assert outputs[0] == outputs[1]
        return outputs[1]

    dry = once("-c", read_only, "--dry-run", check_exit=3)
    assert {name: (dry.result(name), dry.actions(name)) for name in (same, drift, new)} == {
        same: ("unchanged", []), drift: ("planned", ["define"]), new: ("planned", ["define"])}
    assert dry.report == once("-c", box.uri, "--dry-run", check_exit=3).report
    status = both("status", "-m", str(manifests.path), "-o", "json", check_exit=3)
    assert f'"{drift}"' in status and f'"{new}"' in status
    exported = both("export", same, drift, check_exit=0)
    assert f"name: {same}\n" in exported and f"name: {drift}\n" in exported

    # A real run cannot work over that connection, and says so for each VM: it reads the
    # definitions with their secrets (to keep them on a redefinition), and it writes.
    real = once("-c", read_only, check_exit=1)
    errors = {name: real.vms[name]["error"] for name in (same, drift, new)}
    assert {name: (real.result(name), real.actions(name)) for name in errors} == {
        name: ("failed", []) for name in errors}
    for name, error in errors.items():
        assert "\n" not in error and "(libvirt error 29, domain 20)" in error, error
        assert error.startswith(
            f"cannot read domain '{name}': operation forbidden: virDomainGetXMLDesc with "
            "secure flag" if name != new else
            "cannot define domain: operation forbidden: read only access prevents "
            "virDomainDefineXML"), error
    assert snapshot(box.conn, prefix) == before  # nothing changed through any of it
    FIGURES["a read-only libvirt connection (the daemon's libvirt-sock-ro only)"] = [
        ("--once --dry-run: exit 3, same JSON as over the read-write socket; status: exit 3, "
        "same JSON; export: exit 0, same YAML"),
        f"--once (real run): exit 1; e.g. {errors[new]}"]


@pytest.mark.parametrize("strict", [False, True], ids=["warned", "refused"])
def test_the_service_warns_about_or_refuses_manifests_others_may_write(
    box: Host, prefix: str, manifests: Manifests, lock_dir: Path, strict: bool,
) -> None:
    """Like sshd's StrictModes, in the service as in `--once` and `validate`."""
    name = prefix + "vm"
    path = manifests.write("vm.yaml", vm_manifest(name, state="stopped"))
    path.chmod(0o666)
    args = ("--resync", "3600", *(("--strict-permissions",) if strict else ()))
    service = ServiceProcess(manifests=manifests.path, uri=box.uri, lock_dir=lock_dir,
                             args=args)
    unsafe = f"file {re.escape(str(path))} is writable by everyone"
    try:
        service.wait_ready()
        if strict:
            service.wait_log(rf" ERROR invalid manifest vm\.yaml: refused: {unsafe} "
                             r"\(--strict-permissions\); its VMs are left as they are")
            assert box.read(name) is None
        else:
            service.wait_log(rf" WARNING vm\.yaml: {unsafe}; --strict-permissions refuses it")
            wait_until(lambda: box.read(name) is not None, what=f"{name} defined")
    finally:
        code = service.stop()
    assert code == 0, service.log
