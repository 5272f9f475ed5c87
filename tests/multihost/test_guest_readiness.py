"""Addresses and readiness (CONTRACT section 9) on the real Debian guest, end to end:
`reconcile --once --wait`, `status -o json`, `status -o ansible` into `ansible-inventory`
and an Ansible ad-hoc `ping` over SSH, and the service's metrics.

Everything lives on one real libvirt host in a network namespace of its own
(hosts.NetnsHost): a libvirt NAT network with DHCP and a plain Linux bridge there, so any
traffic to the guest's addresses stays inside that namespace (Ansible runs in it through
`ip netns exec`). The guest, booted once and shared by every check, has two NICs:

- `eth0` on the NAT network: its address comes from libvirt's DHCP lease (source lease);
- `eth1` on the bridge, with a static address from cloud-init's network-config: no lease
  exists, so the address comes from the guest agent (source agent).

The domain is defined with raw libvirt only for what a manifest cannot say yet (the
NoCloud seed cdrom, the serial log, the agent channel), then adopted and started by
`reconcile` from a manifest that adds its disk (an overlay made with the storage API)
and both NICs. Boots under TCG take 85 s on a quiet machine, 3-5 min loaded.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import stat
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from tests.support.command import RECONCILE, clean_env, describe
from tests.support.domains import remove_domain
from tests.support.guest import (
    agent_command,
    guest_image,
    real_guest_type,
    wait_for_serial,
)
from tests.support.waiting import wait_until

from .hosts import NetnsHost, start_hosts, stop_hosts

pytestmark = [pytest.mark.guest, pytest.mark.e2e]

BOOT_TIMEOUT = 900  # a deadline, not a wait
NAT_NET = "192.168.150"
STATIC = "10.77.0.5"
ANSIBLE = Path(str(RECONCILE)).parent / "ansible"
ANSIBLE_INVENTORY = Path(str(RECONCILE)).parent / "ansible-inventory"


def _mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _to_xml(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode")


def network_xml(name: str, bridge: str) -> str:
    network = ET.Element("network")
    _sub(network, "name", name)
    _sub(network, "forward", mode="nat")
    _sub(network, "bridge", name=bridge, stp="on", delay="0")
    ip = _sub(network, "ip", address=f"{NAT_NET}.1", netmask="255.255.255.0")
    dhcp = _sub(ip, "dhcp")
    _sub(dhcp, "range", start=f"{NAT_NET}.100", end=f"{NAT_NET}.200")
    return _to_xml(network)


def pool_xml(name: str, path: str) -> str:
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", name)
    _sub(_sub(pool, "target"), "path", path)
    return _to_xml(pool)


def overlay_xml(name: str, backing: Path) -> str:
    volume = ET.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", "4", unit="GiB")
    _sub(_sub(volume, "target"), "format", type="qcow2")
    backing_store = _sub(volume, "backingStore")
    _sub(backing_store, "path", str(backing))
    _sub(backing_store, "format", type="qcow2")
    return _to_xml(volume)


def seed_domain_xml(*, name: str, virt_type: str, seed: str, serial: str) -> str:
    """What a manifest cannot say yet: the seed cdrom (IDE, SeaBIOS on pc), the serial
    log, the agent channel. The disk and the NICs come from the manifest."""
    domain = ET.Element("domain", type=virt_type)
    _sub(domain, "name", name)
    _sub(domain, "memory", "512", unit="MiB")
    _sub(domain, "vcpu", "1")
    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    features = _sub(domain, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    devices = _sub(domain, "devices")
    cdrom = _sub(devices, "disk", type="file", device="cdrom")
    _sub(cdrom, "driver", name="qemu", type="raw")
    _sub(cdrom, "source", file=seed)
    _sub(cdrom, "target", dev="hdc", bus="ide")
    _sub(cdrom, "readonly")
    serial_el = _sub(devices, "serial", type="file")
    _sub(serial_el, "source", path=serial)
    _sub(serial_el, "target", port="0")
    console = _sub(devices, "console", type="file")
    _sub(console, "source", path=serial)
    _sub(console, "target", type="serial", port="0")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    _sub(devices, "memballoon", model="virtio")
    return _to_xml(domain)


def make_seed(path: Path, *, user_data: str, meta_data: str, network_config: str) -> None:
    """A NoCloud seed with a network-config (cloud-localds -N)."""
    parts = {}
    for suffix, text in (("user-data", user_data), ("meta-data", meta_data),
                         ("network-config", network_config)):
        parts[suffix] = path.with_name(f"{path.name}.{suffix}")
        parts[suffix].write_text(text, encoding="utf-8")
    try:
        proc = subprocess.run(
            ["cloud-localds", "-N", str(parts["network-config"]), str(path),
             str(parts["user-data"]), str(parts["meta-data"])],
            capture_output=True, text=True, timeout=60, check=False)
    finally:
        for part in parts.values():
            part.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr


@dataclass
class Lab:
    host: NetnsHost
    prefix: str
    name: str  # the domain
    nat: str  # the libvirt network
    bridge: str  # the plain bridge
    mac_nat: str
    mac_static: str
    work: Path  # this test's own folder (root namespace)
    manifests: Path
    lock_dir: Path
    key: Path  # the SSH private key the guest accepts
    serial: Path  # the console log, as the root namespace sees it
    marker: str
    virt_type: str
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return self.host.uri

    def dom(self) -> Any:
        return self.host.conn().lookupByName(self.name)

    def reconcile(self, *args: str, timeout: float = BOOT_TIMEOUT + 120,
                  netns: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [str(RECONCILE), *args, "-m", str(self.manifests), "-c", self.uri]
        if args[:1] != ("status",):
            argv += ["--lock-dir", str(self.lock_dir)]
        if netns:
            argv = ["ip", "netns", "exec", self.host.netns, *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(), check=False)
        assert "Traceback" not in proc.stderr, describe(proc)
        return proc

    def write_manifest(self, readiness: str) -> None:
        document = {
            "apiVersion": "reconcile/v1", "kind": "VirtualMachine",
            "metadata": {"name": self.name, "labels": {"team": "web", "tier": "front-end"}},
            "spec": {
                "memory": "512MiB", "vcpus": 1, "type": self.virt_type, "stopTimeout": 0,
                "adopt": True, "readiness": readiness,
                "disks": [{"source": f"/var/lib/libvirt/images/{self.prefix}guest/root.qcow2"}],
                "interfaces": [{"network": self.nat, "mac": self.mac_nat},
                               {"bridge": self.bridge, "mac": self.mac_static}],
            },
        }
        (self.manifests / "web.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = guest_image()
    for tool in (ANSIBLE, ANSIBLE_INVENTORY):
        if not tool.exists():
            pytest.fail(f"{tool} is missing: scripts/bootstrap.sh test installs ansible-core "
                        "(the dev extra)", pytrace=False)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    hosts = start_hosts(["lab"])
    host = hosts[0]
    prefix = f"t-{secrets.token_hex(4)}-"
    token = secrets.token_hex(3)
    work = tmp_path_factory.mktemp("readiness")
    work.chmod(0o755)
    lab = Lab(host=host, prefix=prefix, name=prefix + "web", nat=prefix + "nat",
              bridge=f"rcl{token}s", mac_nat=_mac(), mac_static=_mac(), work=work,
              manifests=work / "manifests", lock_dir=work / "locks", key=work / "id_ed25519",
              serial=Path("/"), marker=f"GUEST-READY-{secrets.token_hex(4)}",
              virt_type=real_guest_type())
    lab.manifests.mkdir()
    conn = host.conn()
    network = pool = None
    try:
        network = conn.networkCreateXML(network_xml(lab.nat, f"rcl{token}n"))
        _ip("-n", host.netns, "link", "add", lab.bridge, "type", "bridge")
        _ip("-n", host.netns, "link", "set", lab.bridge, "up")
        inside = f"/var/lib/libvirt/images/{prefix}guest"  # in the host's mount namespace
        pool = conn.storagePoolCreateXML(pool_xml(prefix + "guest", inside),
                                         libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
        pool.createXML(overlay_xml("root.qcow2", base), 0)
        outside = host.base / "root/var/lib/libvirt" / inside.removeprefix("/var/lib/libvirt/")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.key)],
                       check=True, timeout=30)
        public = lab.key.with_suffix(".pub").read_text().strip()
        user_data = "\n".join([
            "#cloud-config",
            f"hostname: {lab.name}",
            "ssh_genkeytypes: [ed25519]",   # one host key: ~30 s less of a TCG boot
            "users:",
            "  - name: tester",
            "    shell: /bin/bash",
            "    sudo: 'ALL=(ALL) NOPASSWD:ALL'",
            f"    ssh_authorized_keys: ['{public}']",
            "runcmd:",
            "  - [ sh, -c, 'echo \"" + lab.marker + " host=$(hostname)\" > /dev/ttyS0' ]",
            ""])
        network_config = yaml.safe_dump({"version": 1, "config": [
            {"type": "physical", "name": "eth0", "mac_address": lab.mac_nat,
             "subnets": [{"type": "dhcp"}]},
            {"type": "physical", "name": "eth1", "mac_address": lab.mac_static,
             "subnets": [{"type": "static", "address": f"{STATIC}/24"}]}]})
        make_seed(outside / "seed.iso", user_data=user_data, network_config=network_config,
                  meta_data=f"instance-id: {lab.name}\nlocal-hostname: {lab.name}\n")
        pool.refresh(0)
        lab.serial = outside / "serial.log"
        conn.defineXML(seed_domain_xml(name=lab.name, virt_type=lab.virt_type,
                                       seed=f"{inside}/seed.iso", serial=f"{inside}/serial.log"))
        yield lab
    finally:
        try:
            remove_domain(conn, lab.name)
            if pool is not None:
                pool.refresh(0)
                for volume in pool.listAllVolumes(0):
                    volume.delete(0)
                pool.destroy()
            if network is not None:
                network.destroy()
            _ip("-n", host.netns, "link", "del", lab.bridge)
        finally:
            stop_hosts(hosts)


def _report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    document = json.loads(proc.stdout)
    assert isinstance(document, dict), describe(proc)
    return document


@pytest.fixture(scope="module")
def first_wait(lab: Lab) -> subprocess.CompletedProcess[str]:
    """Adopt and start the guest with readiness `agent` and a wait far shorter than any
    boot: the VM converges, then fails for what is missing."""
    lab.write_manifest("agent")
    proc = lab.reconcile("--once", "--wait", "--wait-timeout", "3", "-o", "json")
    lab.runs["first"] = proc
    return proc


@pytest.fixture(scope="module")
def ready(lab: Lab, first_wait: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Wait (once) until the agent answers, then until cloud-init is done (its marker on
    the console: both NICs configured, sshd up)."""
    started = time.monotonic()
    proc = lab.reconcile("--once", "--wait", "--wait-timeout", str(BOOT_TIMEOUT), "-o", "json")
    lab.runs["ready"] = proc
    assert proc.returncode == 0, describe(proc)
    wait_for_serial(lab.serial, lab.marker, timeout=BOOT_TIMEOUT, dom=lab.dom())
    print(f"guest ({lab.virt_type}) agent ready after {time.monotonic() - started:.0f} s")
    return _report(proc)


def test_a_wait_that_runs_out_fails_the_vm_with_what_is_missing(
        lab: Lab, first_wait: subprocess.CompletedProcess[str]) -> None:
    assert first_wait.returncode == 1, describe(first_wait)
    vm = {entry["name"]: entry for entry in _report(first_wait)["vms"]}[lab.name]
    assert [step["action"] for step in vm["steps"]] == ["define", "start"]
    assert vm["result"] == "failed"
    assert vm["error"] == "agent not answering after 3 s", vm
    assert vm["agent"] is False
    assert lab.dom().isActive()  # converged: only not ready


def test_the_wait_returns_once_the_agent_answers(lab: Lab, ready: dict[str, Any]) -> None:
    vm = {entry["name"]: entry for entry in ready["vms"]}[lab.name]
    assert (vm["result"], vm["error"], vm["agent"]) == ("unchanged", None, True), vm
    assert agent_command(lab.dom(), {"execute": "guest-ping"}) == {}


def test_status_gives_the_lease_address_and_the_agents_address(
        lab: Lab, ready: dict[str, Any]) -> None:
    leases = {lease["mac"]: lease for lease in
              lab.host.conn().networkLookupByName(lab.nat).DHCPLeases()}
    assert lab.mac_nat in leases, leases
    proc = lab.reconcile("status", "-o", "json")
    assert proc.returncode == 0, describe(proc)
    row = {entry["name"]: entry for entry in _report(proc)["vms"]}[lab.name]
    assert {key: row[key] for key in ("name", "host", "desired", "actual", "inSync", "agent")} \
        == {"name": lab.name, "host": None, "desired": "running", "actual": "running",
            "inSync": True, "agent": True}
    assert row["addresses"] == [
        {"address": leases[lab.mac_nat]["ipaddr"], "prefix": leases[lab.mac_nat]["prefix"],
         "mac": lab.mac_nat,
         "source": "lease"},
        {"address": STATIC, "prefix": 24, "mac": lab.mac_static, "source": "agent"}]
    # what the agent itself says of the second NIC
    interfaces = agent_command(lab.dom(), {"execute": "guest-network-get-interfaces"})
    static = [ip["ip-address"] for nic in interfaces if nic.get("hardware-address") ==
              lab.mac_static for ip in nic.get("ip-addresses", [])]
    assert STATIC in static

    text = lab.reconcile("status")
    header, *rows = [re.split(r"\s{2,}", line) for line in text.stdout.splitlines()]
    cells = dict(zip(header, next(row for row in rows if row[0] == lab.name), strict=False))
    assert (cells["ADDRESSES"], cells["AGENT"]) == (
        f"{leases[lab.mac_nat]['ipaddr']},{STATIC}", "yes")


def _inventory_script(lab: Lab) -> Path:
    script = lab.work / "inventory.sh"
    script.write_text("#!/bin/sh\n"
                      f"exec {RECONCILE} status -o ansible -m {lab.manifests} -c {lab.uri}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def _ansible_env(lab: Lab) -> dict[str, str]:
    home = lab.work / "ansible-home"
    home.mkdir(exist_ok=True)
    return {**clean_env(), "HOME": str(home), "ANSIBLE_HOME": str(home),
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_SSH_ARGS": "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "
                                "-o ConnectTimeout=20"}


def test_the_inventory_feeds_ansible(lab: Lab, ready: dict[str, Any]) -> None:
    """The README's pipeline: --once --wait, then Ansible over `status -o ansible`."""
    lease = next(lease["ipaddr"] for lease in
                 lab.host.conn().networkLookupByName(lab.nat).DHCPLeases()
                 if lease["mac"] == lab.mac_nat)
    script = _inventory_script(lab)
    listed = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(script), "--list"],
                            capture_output=True, text=True, timeout=120, env=_ansible_env(lab),
                            check=False)
    assert listed.returncode == 0, describe(listed)
    inventory = json.loads(listed.stdout)
    assert inventory["_meta"]["hostvars"][lab.name]["ansible_host"] == lease
    assert inventory["label_team_web"]["hosts"] == [lab.name]
    assert inventory["label_tier_front_end"]["hosts"] == [lab.name]
    assert inventory["host_default"]["hosts"] == [lab.name]

    # An ad-hoc command over SSH to the guest: inside the host's namespace, where the
    # NAT network lives (the inventory script's reconcile reaches the host from there too).
    pinged = subprocess.run(
        ["ip", "netns", "exec", lab.host.netns, str(ANSIBLE), "-i", str(script),
         "label_team_web", "-m", "ping", "-u", "tester", "--private-key", str(lab.key),
         "-o"],
        capture_output=True, text=True, timeout=300, env=_ansible_env(lab), check=False)
    assert pinged.returncode == 0, describe(pinged)
    line = next((line for line in pinged.stdout.splitlines()
                 if line.startswith(f"{lab.name} | ")), "")
    assert "SUCCESS" in line and '"pong"' in line, pinged.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metrics(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The samples the service exports: (name, labels, value)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def test_the_service_exports_readiness_and_follows_agent_events(
        lab: Lab, ready: dict[str, Any]) -> None:
    port = _free_port()
    log = lab.work / "service.log"
    argv = [str(RECONCILE), "-m", str(lab.manifests), "-c", lab.uri, "--lock-dir",
            str(lab.lock_dir), "--metrics-address", f"127.0.0.1:{port}", "-vv"]
    with open(log, "w") as stderr:
        service = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr,
                                   env=clean_env())
    try:
        vm = {"host": "default", "name": lab.name}

        def exported() -> list[tuple[str, dict[str, str], float]]:
            assert service.poll() is None, log.read_text()
            try:
                samples = _metrics(port)
            except OSError:
                return []
            ready = ("reconcile_vm_ready", {**vm, "readiness": "agent"}, 1.0)
            return samples if ready in samples else []
        samples = wait_until(exported, timeout=120, interval=0.5, what="reconcile_vm_ready 1")
        assert ("reconcile_vm_agent_up", vm, 1.0) in samples
        addresses = [labels for name, labels, value in samples
                     if name == "reconcile_vm_address_info" and value == 1.0]
        assert {**vm, "address": STATIC, "prefix": "24", "mac": lab.mac_static,
                "source": "agent"} in addresses
        assert [labels["mac"] for labels in addresses if labels["source"] == "lease"] == [
            lab.mac_nat]

        # The agent goes away and comes back: libvirt's agent lifecycle events, seen.
        # (not waited for: the agent that runs the command is the one restarted)
        agent_command(lab.dom(), {"execute": "guest-exec", "arguments": {
            "path": "/bin/systemctl", "arg": ["restart", "qemu-guest-agent"]}})
        wait_until(lambda: f"guest agent of {lab.name} connected" in log.read_text(),
                   timeout=120, interval=0.5, what="the agent's 'connected' event")
        assert f"guest agent of {lab.name} disconnected" in log.read_text()
        wait_until(exported, timeout=120, interval=0.5, what="reconcile_vm_ready 1 again")
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=120)
        finally:
            if service.poll() is None:
                service.kill()
                service.wait()
    assert service.returncode == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
