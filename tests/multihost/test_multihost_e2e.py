"""Many hosts end to end: `reconcile` (the command, as users run it) against three real
libvirt hosts, each its own libvirtd in its own namespaces (see hosts.py), with real KVM
guests: convergence from nothing, a link cut during a pass and during the service, live and
cold moves, a move killed half-way, and per-host agents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.command import RECONCILE, run_captured
from tests.support.domains import lookup
from tests.support.libvirtd import VIRT_TYPE
from tests.support.stacks import dump_stacks
from tests.support.waiting import wait_until

from .conftest import HOST_NAMES, Hosts

pytestmark = pytest.mark.e2e


class Tree:
    """A manifest tree over the test hosts, and `reconcile` run on it."""

    def __init__(self, root: Path, hosts: Hosts, prefix: str):
        self.root = root / "manifests"
        self.root.mkdir()
        self.state = root / "state"
        self.locks = root / "locks"
        self.step_log = root / "steps.jsonl"
        self.hosts = hosts
        self.prefix = prefix
        (self.root / "hosts.yaml").write_text(
            "apiVersion: reconcile/v1\nkind: Hosts\nhosts:\n"
            + "".join(f"  {name}: {uri}\n" for name, uri in hosts.uris().items()))

    def vm(self, short: str, host: str, *, state: str = "running", move: str = "cold",
           memory: int = 64) -> str:
        name = self.prefix + short
        (self.root / f"{short}.yaml").write_text(
            "apiVersion: reconcile/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: {name}}}\n"
            f"spec: {{memory: {memory}, vcpus: 1, type: {VIRT_TYPE}, stopTimeout: 0, "
            f"state: {state}, host: {host}, moveStrategy: {move}}}\n")
        return name

    def command(self, *extra: str) -> list[str]:
        return [str(RECONCILE), "-m", str(self.root), "--state-dir", str(self.state),
                "--lock-dir", str(self.locks), "--step-log", str(self.step_log),
                "--connect-timeout", "5", *extra]

    def once(self, *extra: str, timeout: float = 240) -> tuple[int, dict[str, object], str]:
        done = run_captured(self.command("--once", "-o", "json", *extra), timeout=timeout)
        return done.returncode, json.loads(done.stdout), done.stderr

    def steps(self) -> list[dict[str, object]]:
        if not self.step_log.exists():
            return []
        return [json.loads(line) for line in self.step_log.read_text().splitlines()]


@pytest.fixture
def tree(tmp_path: Path, hosts: Hosts, prefix: str) -> Tree:
    return Tree(tmp_path, hosts, prefix)


def _state(conn: libvirt.virConnect, name: str) -> tuple[str, str] | None:
    """(running | paused | stopped, UUID) of `name` on a host, or None when it has no such
    domain. A live migration's incoming copy is paused until the switch-over."""
    dom = lookup(conn, name)
    if dom is None:
        return None
    state = dom.state()[0]
    text = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}.get(
        state, "running" if dom.isActive() else "stopped")
    return text, dom.UUIDString()


def _where(hosts: Hosts, name: str) -> dict[str, tuple[str, str]]:
    found = {}
    for host_name, host in hosts.items():
        state = _state(host.conn(), name)
        if state is not None:
            found[host_name] = state
    return found


def _results(report: dict[str, object]) -> dict[str, tuple[str, str | None]]:
    vms = report["vms"]
    assert isinstance(vms, list)
    return {vm["name"]: (vm["result"], vm["host"]) for vm in vms}


class NeverTwo:
    """Watches a VM on every host from a thread; records any moment it ran on two."""

    def __init__(self, hosts: Hosts, name: str):
        # Connections of our own: the test's cached ones are used by the test thread.
        self.conns = {host_name: libvirt.open(host.uri) for host_name, host in hosts.items()}
        self.name = name
        self.seen_running: set[str] = set()
        self.both: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            running = []
            for host_name, conn in self.conns.items():
                try:
                    state = _state(conn, self.name)
                except libvirt.libvirtError:
                    continue  # a cut link: unknown for now
                if state is not None and state[0] == "running":
                    running.append(host_name)
            self.seen_running.update(running)
            if len(running) > 1:
                self.both.append(running)
            self._stop.wait(0.02)

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(10)
        for conn in self.conns.values():
            conn.close()


@pytest.fixture
def never_two(hosts: Hosts) -> Iterator[list[NeverTwo]]:
    watchers: list[NeverTwo] = []
    yield watchers
    for watcher in watchers:
        watcher.stop()


# --- converging -----------------------------------------------------------------------------

def test_fifteen_vms_over_three_hosts_converge_then_a_pass_is_all_unchanged(
        tree: Tree, hosts: Hosts) -> None:
    placed = {tree.vm(f"vm{i:02d}", HOST_NAMES[i % 3],
                      state="stopped" if i % 5 == 4 else "running"): HOST_NAMES[i % 3]
              for i in range(15)}
    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report) == {name: ("converged", host) for name, host in placed.items()}
    for name, host in placed.items():
        where = _where(hosts, name)
        assert list(where) == [host]
        wanted = "stopped" if name.endswith(("04", "09", "14")) else "running"
        assert where[host][0] == wanted
        xml = hosts[host].conn().lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert f'host="{host}"' in xml  # the ownership mark names the host

    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report) == {name: ("unchanged", host) for name, host in placed.items()}
    inventory = json.loads((tree.state / "inventory.json").read_text())["hosts"]
    for host in HOST_NAMES:
        assert inventory[host]["domains"] == sorted(n for n, h in placed.items() if h == host)


# --- a host cut off ---------------------------------------------------------------------------

def test_a_cut_host_fails_alone_in_a_pass_and_converges_when_back(
        tree: Tree, hosts: Hosts) -> None:
    first = tree.vm("a", "kvm-1")
    third = tree.vm("c", "kvm-3")
    code, _, err = tree.once()
    assert code == 0, err
    tree.vm("b", "kvm-2")
    tree.vm("d", "kvm-3")  # new, on the host about to be cut
    hosts["kvm-3"].conn().lookupByName(third).destroy()  # drift there, to be left alone
    hosts["kvm-3"].cut()

    code, report, err = tree.once()
    assert code == 1
    results = _results(report)
    assert results[first] == ("unchanged", "kvm-1")
    assert results[tree.prefix + "b"] == ("converged", "kvm-2")
    for name in (third, tree.prefix + "d"):
        assert results[name] == ("failed", "kvm-3")
    assert "host kvm-3 is unreachable" in err
    vms = report["vms"]
    assert isinstance(vms, list)
    assert "kvm-3" in next(vm for vm in vms if vm["name"] == third)["error"]

    hosts["kvm-3"].restore()
    assert _state(hosts["kvm-3"].conn(), third) == ("stopped", _state(
        hosts["kvm-3"].conn(), third)[1])  # type: ignore[index]  # untouched while cut
    assert _state(hosts["kvm-3"].conn(), tree.prefix + "d") is None
    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[third] == ("converged", "kvm-3")
    assert _results(report)[tree.prefix + "d"] == ("converged", "kvm-3")


def test_a_link_cut_during_a_pass(tree: Tree, hosts: Hosts) -> None:
    """The link goes down while the pass runs: that host's VMs fail (keepalive), the other
    hosts' VMs converge, and the pass ends."""
    names = {tree.vm(f"v{i}", HOST_NAMES[i % 3]): HOST_NAMES[i % 3] for i in range(9)}
    process = subprocess.Popen(tree.command("--once", "-o", "json", "--workers", "1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: process.poll() is not None
                   or any(step.get("phase") == "done" for step in tree.steps()), 60,
                   what="the first step of the pass")
        assert process.poll() is None, process.communicate()
        hosts["kvm-3"].cut()
        out, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, err
    results = _results(json.loads(out))
    for name, host in names.items():
        if host != "kvm-3":
            assert results[name] == ("converged", host), (name, results[name])
    assert any(results[name][0] == "failed" for name, host in names.items() if host == "kvm-3")
    hosts["kvm-3"].restore()
    code, report, err = tree.once()
    assert code == 0, err
    assert {result for result, _ in _results(report).values()} <= {"unchanged", "converged"}
    for name, host in names.items():
        assert list(_where(hosts, name)) == [host]


def test_the_service_keeps_other_hosts_converging_while_one_is_cut(
        tree: Tree, hosts: Hosts) -> None:
    names = {tree.vm(f"s{i}", HOST_NAMES[i % 3]): HOST_NAMES[i % 3] for i in range(3)}
    log = tree.root.parent / "service.log"
    with open(log, "w") as stderr:
        service = subprocess.Popen(tree.command("--resync", "2"), stderr=stderr,
                                   stdout=subprocess.DEVNULL)
    try:
        for name, host in names.items():
            wait_until(lambda n=name, h=host: _state(hosts[h].conn(), n)  # type: ignore[misc]
                       and _state(hosts[h].conn(), n)[0] == "running", 60,  # type: ignore[index]
                       what=f"{name} running on {host}")
        hosts["kvm-3"].cut()
        wait_until(lambda: "kvm-3" in log.read_text() and "unreachable" in log.read_text()
                   or "lost the libvirt connection" in log.read_text(), 60,
                   what="the service to notice kvm-3 is gone")
        # the other hosts still converge: a new VM on kvm-1, a destroyed one on kvm-2
        added = tree.vm("s-new", "kvm-1")
        on_two = next(name for name, host in names.items() if host == "kvm-2")
        hosts["kvm-2"].conn().lookupByName(on_two).destroy()
        on_three = next(name for name, host in names.items() if host == "kvm-3")
        tree.vm(on_three[len(tree.prefix):], "kvm-3", memory=96)  # an edit it cannot apply
        wait_until(lambda: (_state(hosts["kvm-1"].conn(), added) or ("",))[0] == "running",
                   60, what="the new VM on kvm-1")
        wait_until(lambda: (_state(hosts["kvm-2"].conn(), on_two) or ("",))[0] == "running",
                   60, what="the destroyed VM on kvm-2 to run again")
        hosts["kvm-3"].restore()

        def resized() -> bool:
            dom = hosts["kvm-3"].conn().lookupByName(on_three)
            return bool(dom.isActive()) and dom.maxMemory() == 96 * 1024
        wait_until(resized, 180, what="kvm-3 to converge once back")
    except AssertionError as error:
        raise AssertionError(f"{error}\nthe service's log:\n{log.read_text()[-4000:]}"
                             f"\nthe service's threads:\n{dump_stacks(service.pid)}") from None
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    assert service.returncode == 0, log.read_text()[-3000:]


# --- moves ----------------------------------------------------------------------------------------

def _running_and_watched(tree: Tree, hosts: Hosts, never_two: list[NeverTwo], short: str,
                         host: str, *, move: str = "cold") -> tuple[str, str, NeverTwo]:
    """A VM converged on `host` from nothing: its name, its UUID, and a NeverTwo on it."""
    name = tree.vm(short, host, move=move)
    code, _, err = tree.once()
    assert code == 0, err
    state = _state(hosts[host].conn(), name)
    assert state is not None and state[0] == "running"
    watcher = NeverTwo(hosts, name)
    never_two.append(watcher)
    return name, state[1], watcher


def test_a_running_guest_moves_live(tree: Tree, hosts: Hosts,
                                    never_two: list[NeverTwo]) -> None:
    name, uuid, watcher = _running_and_watched(tree, hosts, never_two, "live", "kvm-1",
                                               move="live")
    started_at = hosts["kvm-1"].conn().lookupByName(name).info()[4]  # CPU time so far

    tree.vm("live", "kvm-2", move="live")
    code, report, err = tree.once()
    assert code == 0, err
    outcome = report["vms"][0]  # type: ignore[index]
    assert outcome["result"] == "converged" and outcome["host"] == "kvm-2"
    assert [step["action"] for step in outcome["steps"]] == ["migrate"]
    assert _where(hosts, name) == {"kvm-2": ("running", uuid)}  # the same UUID
    moved = hosts["kvm-2"].conn().lookupByName(name)
    assert moved.ID() > 0 and moved.isPersistent()
    # the guest kept running: a migrated guest keeps its CPU time, a restarted one starts at 0
    assert moved.info()[4] >= started_at
    assert 'host="kvm-2"' in moved.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    watcher.stop()
    assert watcher.both == []
    assert watcher.seen_running == {"kvm-1", "kvm-2"}
    code, report, err = tree.once()
    assert code == 0 and _results(report)[name] == ("unchanged", "kvm-2"), err


def test_a_cold_move_keeps_the_uuid_and_never_runs_two(
        tree: Tree, hosts: Hosts, never_two: list[NeverTwo]) -> None:
    name, uuid, watcher = _running_and_watched(tree, hosts, never_two, "cold", "kvm-2")

    tree.vm("cold", "kvm-3")
    code, report, err = tree.once()
    assert code == 0, err
    steps = [(step["action"], step["reason"]) for step in report["vms"][0]["steps"]]  # type: ignore[index]
    assert [action for action, _ in steps] == ["destroy", "define", "start", "undefine"]
    assert _where(hosts, name) == {"kvm-3": ("running", uuid)}
    watcher.stop()
    assert watcher.both == []


def test_a_move_killed_half_way_is_finished_by_the_next_pass(
        tree: Tree, hosts: Hosts, never_two: list[NeverTwo]) -> None:
    name, uuid, watcher = _running_and_watched(tree, hosts, never_two, "kill", "kvm-1")

    tree.vm("kill", "kvm-2")
    process = subprocess.Popen(tree.command("--once"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        # kill -9 right after the definition arrives on the target, before its start
        wait_until(lambda: any(step["action"] == "define" and step["phase"] == "done"
                               and step.get("host") == "kvm-2" for step in tree.steps()),
                   60, interval=0.005, what="the define on kvm-2")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(30)
    where = _where(hosts, name)
    assert "kvm-2" in where  # the move got that far
    assert sum(state == "running" for state, _ in where.values()) <= 1

    code, report, err = tree.once()
    assert code == 0, err
    assert _results(report)[name] == ("converged", "kvm-2")
    assert _where(hosts, name) == {"kvm-2": ("running", uuid)}
    watcher.stop()
    assert watcher.both == []


# --- per-host agents --------------------------------------------------------------------------

def test_per_host_agents_each_touch_only_their_own_host(tree: Tree, hosts: Hosts) -> None:
    one = [tree.vm(f"p1-{i}", "kvm-1") for i in range(2)]
    two = [tree.vm(f"p2-{i}", "kvm-2") for i in range(2)]
    three = tree.vm("p3", "kvm-3")
    # a managed orphan on each host: only the agent of that host may prune it
    orphans = {}
    for host in ("kvm-1", "kvm-2"):
        name = f"{tree.prefix}orphan-{host}"
        hosts[host].conn().defineXML(
            f"<domain type='{VIRT_TYPE}'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><metadata>"
            "<reconcile:managed xmlns:reconcile='urn:reconcile-libvirt:managed:1'/>"
            "</metadata><os><type>hvm</type></os></domain>")
        orphans[host] = name

    agents = [subprocess.Popen(tree.command("--once", "-o", "json", "--host", host, "--prune",
                                            "--lock-dir", str(tree.locks / host)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for host in ("kvm-1", "kvm-2")]
    reports = []
    for agent in agents:
        out, err = agent.communicate(timeout=180)
        assert agent.returncode == 0, err
        reports.append(json.loads(out))
    assert set(_results(reports[0])) == set(one) | {orphans["kvm-1"]}
    assert set(_results(reports[1])) == set(two) | {orphans["kvm-2"]}
    for name in one:
        assert list(_where(hosts, name)) == ["kvm-1"]
    for name in two:
        assert list(_where(hosts, name)) == ["kvm-2"]
    assert _where(hosts, three) == {}  # kvm-3 has no agent here
    for host, name in orphans.items():
        assert _where(hosts, name) == {}, f"the agent of {host} prunes its own orphan"
    steps = tree.steps()
    assert {step["pid"] for step in steps} == {agent.pid for agent in agents}
    for step in steps:
        mine = one if step["pid"] == agents[0].pid else two
        orphan = orphans["kvm-1" if step["pid"] == agents[0].pid else "kvm-2"]
        assert step["vm"] in mine or step["vm"] == orphan
