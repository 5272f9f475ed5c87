"""Addresses and readiness (CONTRACT section 9) through the command line and the
service's guest watch, on libvirt's test driver.

The test driver answers virDomainInterfaceAddresses for every interface of a running
domain (as a DHCP lease would) and knows no guest agent commands: a domain with an
agent channel there has an agent that never answers. Each test starts the driver from
a host file of its own: `web` (running, one NIC), `agt` (running, the agent channel,
no NIC) and `idle` (stopped), all managed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

from controller.cli import main
from controller.domainxml import MANAGED_NS
from controller.hosts import DEFAULT_HOST
from controller.model import DesiredState, Outcome, Readiness, Result, VMSpec
from controller.service.guests import GuestCollector, GuestWatch
from controller.settings import Settings
from controller.virt import guest as guest_module
from tests.support.waiting import wait_until

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
MAC = "52:54:00:aa:00:01"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def _domain(name: str, devices: str, *, running: bool = True) -> str:
    return (f"<domain type='kvm'><name>{name}</name>"
            f"<metadata><reconcile:managed xmlns:reconcile='{MANAGED_NS}' source='{name}.yaml'/>"
            "</metadata><memory unit='MiB'>64</memory><currentMemory unit='MiB'>64"
            "</currentMemory><vcpu>1</vcpu><os><type>hvm</type></os>"
            f"<devices>{devices}</devices>"
            f"<test:runstate xmlns:test='{TEST_NS}'>{1 if running else 5}</test:runstate>"
            "</domain>")


NIC = (f"<interface type='network'><mac address='{MAC}'/><source network='default'/>"
       "<model type='virtio'/></interface>")
NETWORK = ("<network><name>default</name><bridge name='virbr0'/>"
           "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>"
           "<range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>")
CHANNEL = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"


@pytest.fixture
def uri(tmp_path: Path) -> str:
    path = tmp_path / "host.xml"
    path.write_text("<node>\n" + "\n".join([
        NETWORK, _domain("web", NIC), _domain("agt", CHANNEL),
        _domain("idle", "", running=False),
    ]) + "\n</node>\n", encoding="utf-8")
    return f"test://{path}"


def manifest(name: str, *, state: str = "running", readiness: str | None = None,
             interfaces: str = "", labels: str = "") -> str:
    extra = f"  readiness: {readiness}\n" if readiness else ""
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"{labels}spec:\n  state: {state}\n  memory: 64MiB\n  vcpus: 1\n  stopTimeout: 0\n"
            f"{extra}{interfaces}")


WEB_NICS = f"  interfaces: [{{network: default, mac: '{MAC}'}}]\n"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("NO_COLOR", "1")
    path = tmp_path / "manifests"
    path.mkdir()
    return path


def write(tree: Path, *, web: str = "address", agt: str = "running") -> None:
    (tree / "web.yaml").write_text(manifest(
        "web", readiness=web, interfaces=WEB_NICS,
        labels="  labels: {team: web, tier: front-end}\n"))
    (tree / "agt.yaml").write_text(manifest("agt", readiness=agt))
    (tree / "idle.yaml").write_text(manifest("idle", state="stopped"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lease_of(uri: str, name: str) -> list[dict[str, object]]:
    """What libvirt itself answers for the domain's leases, in the contract's form."""
    conn = libvirt.open(uri)
    try:
        reply = conn.lookupByName(name).interfaceAddresses(
            libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
    finally:
        conn.close()
    return [{"address": a["addr"], "prefix": a["prefix"], "mac": nic["hwaddr"],
             "source": "lease"} for nic in reply.values() for a in nic["addrs"]]


# --- --once -----------------------------------------------------------------------------

def test_once_json_gives_each_vm_its_addresses_and_agent(
        capsys: pytest.CaptureFixture[str], tree: Path, uri: str) -> None:
    write(tree)
    code, out, err = run(capsys, "--once", "-m", str(tree), "-c", uri, "-o", "json")
    assert code == 0, err
    vms = {vm["name"]: vm for vm in json.loads(out)["vms"]}
    assert {name: vm["result"] for name, vm in vms.items()} == {
        "agt": "unchanged", "idle": "unchanged", "web": "unchanged"}
    expected = lease_of(uri, "web")
    assert expected and expected[0]["mac"] == MAC
    assert (vms["web"]["addresses"], vms["web"]["agent"]) == (expected, None)
    assert (vms["agt"]["addresses"], vms["agt"]["agent"]) == ([], False)  # never answers here
    assert (vms["idle"]["addresses"], vms["idle"]["agent"]) == ([], None)


def test_a_text_pass_without_wait_reads_no_guest(
        capsys: pytest.CaptureFixture[str], tree: Path, uri: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    looked: list[str] = []
    real = guest_module.Guests.look

    def counting(self: guest_module.Guests, name: str, **kwargs: int) -> object:
        looked.append(name)
        return real(self, name, **kwargs)
    monkeypatch.setattr(guest_module.Guests, "look", counting)
    write(tree)
    code, out, err = run(capsys, "--once", "-m", str(tree), "-c", uri)
    assert code == 0, err
    assert looked == [] and "guest:" not in out
    code, out, err = run(capsys, "--once", "-m", str(tree), "-c", uri, "-o", "json")
    assert code == 0, err
    # JSON reads the guests the pass saw running; "idle" it saw stopped and left as it
    # was, so its guest is not running: no addresses, no agent, without asking again
    assert sorted(looked) == ["agt", "web"]
    idle = next(vm for vm in json.loads(out)["vms"] if vm["name"] == "idle")
    assert (idle["result"], idle["addresses"], idle["agent"]) == ("unchanged", [], None)


def test_wait_returns_when_every_running_vm_is_ready(
        capsys: pytest.CaptureFixture[str], tree: Path, uri: str) -> None:
    write(tree, web="address", agt="running")
    code, out, err = run(capsys, "--once", "--wait", "-m", str(tree), "-c", uri)
    assert code == 0, err
    address = lease_of(uri, "web")[0]
    assert f"      guest: {address['address']}/24 (lease); no agent" in out.splitlines()
    assert "      guest: no address; agent not answering" in out.splitlines()  # agt


def test_wait_fails_what_is_not_ready_in_time_and_says_what_is_missing(
        capsys: pytest.CaptureFixture[str], tree: Path, uri: str) -> None:
    write(tree, web="agent", agt="address")
    (tree / "bare.yaml").write_text(manifest("bare", readiness="agent"))
    code, out, err = run(capsys, "--once", "--wait", "--wait-timeout", "1", "-m", str(tree),
                         "-c", uri, "-o", "json")
    assert code == 1, err
    vms = {vm["name"]: vm for vm in json.loads(out)["vms"]}
    assert {name: (vm["result"], vm["error"]) for name, vm in vms.items()} == {
        # no NIC: no lease; an agent channel whose agent never answers
        "agt": ("failed", "no address after 1 s (agent not answering)"),
        # created and started by this pass, then judged at once: waiting cannot help
        "bare": ("failed", "not ready: no guest agent (the domain has no "
                           "org.qemu.guest_agent.0 channel)"),
        "idle": ("unchanged", None),  # stopped: nothing to wait for
        "web": ("failed", "not ready: no guest agent (the domain has no "
                          "org.qemu.guest_agent.0 channel)"),
    }
    assert [step["action"] for step in vms["bare"]["steps"]] == ["define", "start"]
    assert vms["web"]["addresses"] == lease_of(uri, "web")


@pytest.mark.parametrize("argv", [["--wait"], ["--once", "--dry-run", "--wait"]])
def test_wait_needs_a_real_once_run(capsys: pytest.CaptureFixture[str], tree: Path, uri: str,
                                    argv: list[str]) -> None:
    code, out, err = run(capsys, *argv, "-m", str(tree), "-c", uri)
    assert (code, out) == (2, "")
    assert err == ("reconcile: error: --wait needs --once, without --dry-run\n")


# --- status -------------------------------------------------------------------------------

def test_status_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str], tree: Path,
                                           uri: str) -> None:
    write(tree)
    code, out, err = run(capsys, "status", "-m", str(tree), "-c", uri, "-o", "json")
    assert code == 0, err
    rows = {row["name"]: row for row in json.loads(out)["vms"]}
    keys = ("name", "host", "desired", "actual", "inSync", "reason", "agent", "addresses")
    assert {key: rows["web"][key] for key in keys} == {
        "name": "web", "host": None, "desired": "running", "actual": "running",
        "inSync": True, "reason": "", "agent": None, "addresses": lease_of(uri, "web")}
    assert (rows["agt"]["agent"], rows["idle"]["agent"], rows["idle"]["addresses"]) == (
        False, None, [])

    code, out, err = run(capsys, "status", "-m", str(tree), "-c", uri)
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert lines["web"].split()[9:11] == [str(lease_of(uri, "web")[0]["address"]), "-"]
    assert lines["agt"].split()[9:11] == ["-", "no"]


def test_status_ansible_is_an_inventory_ansible_reads(
        capsys: pytest.CaptureFixture[str], tree: Path, uri: str, tmp_path: Path) -> None:
    write(tree)
    code, out, err = run(capsys, "status", "-m", str(tree), "-c", uri, "-o", "ansible")
    assert code == 0, err
    assert "agt runs but has no address yet" in err
    printed = json.loads(out)
    assert printed["_meta"]["hostvars"]["web"]["ansible_host"] == \
        lease_of(uri, "web")[0]["address"]
    if not ANSIBLE_INVENTORY.exists():
        pytest.fail(f"{ANSIBLE_INVENTORY} is missing: the dev extra installs ansible-core",
                    pytrace=False)
    # Ansible's own reading of it, as an inventory script that runs reconcile
    script = tmp_path / "inventory.py"
    script.write_text(f"#!{sys.executable}\nfrom controller.cli import main\nimport sys\n"
                      f"sys.exit(main(['status', '-o', 'ansible', '-m', {str(tree)!r}, "
                      f"'-c', {uri!r}]))\n")
    script.chmod(0o755)
    home = tmp_path / "ansible-home"
    home.mkdir()
    proc = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(script), "--list"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home),
                               "ANSIBLE_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["_meta"]["hostvars"]["web"]["ansible_host"] == \
        printed["_meta"]["hostvars"]["web"]["ansible_host"]
    assert listed["_meta"]["hostvars"]["web"]["reconcile_labels"] == {
        "team": "web", "tier": "front-end"}
    assert set(listed["_meta"]["hostvars"]) == {"web", "agt"}  # idle is not running
    assert listed["label_team_web"] == {"hosts": ["web"]}
    assert listed["label_tier_front_end"] == {"hosts": ["web"]}
    assert sorted(listed["host_default"]["hosts"]) == ["agt", "web"]
    assert "[WARNING]" not in proc.stderr, proc.stderr  # group names Ansible takes as they are


# --- the service's guest watch ---------------------------------------------------------------

def _outcome(name: str, readiness: Readiness, result: Result = Result.UNCHANGED) -> Outcome:
    spec = VMSpec(name=name, source=f"{name}.yaml", state=DesiredState.RUNNING,
                  readiness=readiness)
    return Outcome(name, spec.source, result, spec=spec)


def test_the_guest_watch_polls_only_the_vms_not_ready(uri: str) -> None:
    from controller.assemble import make_hosts

    hosts = make_hosts(Settings(manifests="", connect=uri), readonly=False)
    hosts.set_hosts({})
    host = hosts[DEFAULT_HOST]
    host.hypervisor.connection.connect()
    host.up = True  # as the service's supervisor says once connected
    watch = GuestWatch(hosts, backoff=(0.01, 0.04))
    watch.start()
    try:
        watch.outcome(_outcome("web", Readiness.ADDRESS))
        watch.outcome(_outcome("agt", Readiness.AGENT))  # its agent never answers here
        wait_until(lambda: len(watch.snapshot()) == 2 and all(
            vm.info is not None for vm in watch.snapshot()), what="both looked at")
        polled = watch.looks["agt"]
        wait_until(lambda: watch.looks["agt"] >= polled + 3, what="agt looked at again")
        assert watch.looks["web"] == 1  # ready: not polled
        states = {vm.name: (vm.ready, vm.missing) for vm in watch.snapshot()}
        assert states == {"web": (True, None), "agt": (False, "not ready: agent not answering")}
        # a ready VM has nothing scheduled; the one not ready has exactly one look planned
        assert watch.scheduled() == ["agt"]
        assert watch.not_ready() == 1

        # an agent event looks at once; forgetting stops the polling
        watch.forget("agt")
        assert watch.scheduled() == []
        watch.agent_event(DEFAULT_HOST, "web", True)
        wait_until(lambda: watch.looks["web"] == 2, what="the look an agent event asks for")
        assert watch.scheduled() == []

        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.parser import text_string_to_metric_families
        registry = CollectorRegistry()
        registry.register(GuestCollector(watch))
        text = generate_latest(registry).decode()
        samples = [(sample.name, sample.labels, sample.value)
                   for family in text_string_to_metric_families(text)
                   for sample in family.samples]
        address = lease_of(uri, "web")[0]
        assert samples == [
            ("reconcile_vm_ready", {"host": "default", "name": "web", "readiness": "address"},
             1.0),
            ("reconcile_vm_address_info", {"host": "default", "name": "web",
                                           "address": address["address"], "prefix": "24",
                                           "mac": MAC, "source": "lease"}, 1.0)]
        assert "agt" not in text
    finally:
        watch.stop()
        hosts.close()


def test_a_thousand_ready_vms_cost_one_look_each_and_no_polling(tmp_path: Path) -> None:
    from controller.assemble import make_hosts

    names = [f"vm-{index:04d}" for index in range(1000)]
    path = tmp_path / "big.xml"
    path.write_text("<node>\n" + NETWORK + "\n".join(_domain(name, "") for name in names)
                    + "\n</node>\n", encoding="utf-8")
    hosts = make_hosts(Settings(manifests="", connect=f"test://{path}"), readonly=False)
    hosts.set_hosts({})
    hosts[DEFAULT_HOST].hypervisor.connection.connect()
    hosts[DEFAULT_HOST].up = True
    watch = GuestWatch(hosts)
    watch.start()
    try:
        for name in names:
            watch.outcome(_outcome(name, Readiness.RUNNING, Result.CONVERGED))
        wait_until(lambda: sum(watch.looks.values()) >= len(names), timeout=120,
                   what="every VM looked at once")
        wait_until(lambda: watch.scheduled() == [], what="the watch to go idle")
        assert set(watch.looks.values()) == {1}
        assert watch.not_ready() == 0
        # a resync reconciles every VM again, with nothing to do: no look is planned
        for name in names:
            watch.outcome(_outcome(name, Readiness.RUNNING))
        assert watch.scheduled() == []
    finally:
        watch.stop()
        hosts.close()
