"""Real libvirt hosts on one machine, for the many-hosts tests.

A `NetnsHost` is one real libvirtd in its own network namespace and its own mount
namespace (private /run, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt,
/etc/libvirt/qemu, /etc/libvirt/storage and /etc/libvirt/secrets), reachable from the
root namespace as `qemu+tcp://ADDR/system`. The namespace hangs off a veth pair with a
/24 of its own (10.231.X.0/24, X random and free on this machine: other test sessions may
build hosts at the same time) and a default route via the root namespace, which forwards
between hosts so that they can migrate guests to each other. `cut()` takes the link down
(a partition: packets to the host are dropped silently), `restore()` brings it back.

The recipe is the one in shared/LIBVIRT-HOST.md ("Several hosts on one machine"); the
start script is tests/support/libvirtd.py's, run with `--listen`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import libvirt

from tests.support.domains import remove_domains
from tests.support.libvirtd import wait_answering, write_start_script

_SUBNET = "10.231"
_LOCK = Path("/run/lock/rcl-multihost.lock")
# One file per process that needs net.ipv4.ip_forward=1, plus the value found before the
# first of them set it; guarded by _LOCK, so that concurrent sessions restore it only
# when the last of them is done.
_FORWARD_DIR = Path("/run/rcl-multihost-forward")
_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

# QEMU capabilities as our test hosts probed them, so that the next ones skip the probe
# (~4 s per QEMU binary). libvirt keys the cache on the host's CPUID as its QEMU driver
# read it at start-up, which on this VM differs from one vCPU to the other: each host
# therefore starts pinned to one CPU (and is unpinned once it answers), so that one seed
# fits every host.
_SEED = Path("/var/tmp/rcl-multihost/qemu-capabilities")
_SYSTEM_CAPS = Path("/var/cache/libvirt/qemu/capabilities")

T = TypeVar("T")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialises subnet choice and ip_forward bookkeeping across test sessions."""
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _used_subnets() -> set[int]:
    """The X of every 10.231.X.* address or route configured in the root namespace."""
    text = _ip("-o", "addr").stdout + _ip("route", "show", "table", "all").stdout
    used: set[int] = set()
    for word in text.replace("/", " ").split():
        parts = word.split(".")
        if len(parts) == 4 and ".".join(parts[:2]) == _SUBNET and parts[2].isdigit():
            used.add(int(parts[2]))
    return used


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _hold_forwarding(token: str) -> None:
    """Turn on IPv4 forwarding for this holder (call under _machine_lock)."""
    _FORWARD_DIR.mkdir(parents=True, exist_ok=True)
    original = _FORWARD_DIR / "original"
    holders = [p for p in _FORWARD_DIR.glob("holder-*")
               if _pid_alive(int(p.name.split("-")[1]))]
    if not holders or not original.exists():
        original.write_text(_FORWARD.read_text().strip())
    (_FORWARD_DIR / f"holder-{os.getpid()}-{token}").touch()
    if _FORWARD.read_text().strip() != "1":
        _FORWARD.write_text("1\n")


def _release_forwarding(token: str) -> None:
    """Forget this holder; the last live holder restores the value found before the first."""
    (_FORWARD_DIR / f"holder-{os.getpid()}-{token}").unlink(missing_ok=True)
    holders = [p for p in _FORWARD_DIR.glob("holder-*")
               if _pid_alive(int(p.name.split("-")[1]))]
    if holders:
        return
    original = _FORWARD_DIR / "original"
    if original.exists():
        value = original.read_text().strip()
        if value != "1":
            _FORWARD.write_text(value + "\n")
    shutil.rmtree(_FORWARD_DIR, ignore_errors=True)


def call_with_deadline(func: Callable[[], T],
                       timeout: float) -> tuple[str, T | BaseException | None]:
    """Run `func` in a daemon thread; ("ok", value), ("error", exc) or ("timeout", None).

    libvirt's open and RPC calls have no timeout of their own: this is how a caller
    gives up on one (the thread is abandoned and ends when libvirt gives up)."""
    box: list[tuple[str, T | BaseException]] = []

    def run() -> None:
        try:
            box.append(("ok", func()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        return "timeout", None
    return box[0]


class NetnsHost:
    """One libvirt host in its own network and mount namespaces; see the module docstring.

    Build with `NetnsHost(name, netns=...)` then `start()`; `stop()` is safe after any
    partial start. Needs root, ip(8), unshare(1), libvirtd and virtlogd."""

    def __init__(self, name: str, *, netns: str, veth: str) -> None:
        _SEED.parent.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.netns = netns
        self.veth_root = f"{veth}a"  # in the root namespace
        self.veth_host = f"{veth}b"  # in the host's namespace
        self.subnet: int | None = None
        self.base = Path(tempfile.mkdtemp(prefix=f"{netns}-", dir="/tmp"))
        self.daemon: subprocess.Popen[bytes] | None = None
        self.virtlogd_pid: int | None = None
        self._token = secrets.token_hex(4)
        self._netns_made = False
        self._veth_made = False
        self._forwarding = False
        self._is_cut = False
        self._conn: libvirt.virConnect | None = None
        self._dead: list[libvirt.virConnect] = []
        (self.base / "owner").write_text(f"{os.getpid()}\n")  # for sweep_stale()
        self._log = open(self.base / "libvirtd.log", "ab")  # noqa: SIM115 - closed in stop()

    # --- addresses -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        assert self.subnet is not None, "not started"
        return f"{_SUBNET}.{self.subnet}.2"

    @property
    def gateway(self) -> str:
        assert self.subnet is not None, "not started"
        return f"{_SUBNET}.{self.subnet}.1"

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    @property
    def migrate_uri(self) -> str:
        """The data channel of a migration to this host (all hosts share one hostname)."""
        return f"tcp://{self.address}"

    @property
    def is_cut(self) -> bool:
        return self._is_cut

    def __repr__(self) -> str:
        return f"NetnsHost({self.name!r}, {self.uri if self.subnet else 'not started'})"

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        self._network()
        conf = self.base / "libvirtd.conf"
        # A host UUID of its own: libvirt refuses to migrate to "the same host".
        conf.write_text('listen_tcp = 1\nauth_tcp = "none"\nlisten_tls = 0\n'
                        f'host_uuid = "{uuid.uuid4()}"\n')
        script = write_start_script(self.base)
        with _machine_lock():
            seed = _SEED if _SEED.is_dir() else _SYSTEM_CAPS
            if seed.is_dir():
                shutil.copytree(seed, self.base / "capabilities")
        cpus = os.sched_getaffinity(0)
        pin = ["taskset", "-c", str(min(cpus))] if shutil.which("taskset") else []
        # `ip netns exec`, `taskset` and `unshare` all exec: the PID is libvirtd's.
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *pin, "unshare", "--mount", "--propagation",
             "private", str(script), str(self.base), "--listen"],
            stdout=self._log, stderr=self._log)
        self.wait_answering(timeout)
        self.virtlogd_pid = int((self.base / "virtlogd.pid").read_text())
        # Load (or probe, once) the capabilities of every QEMU now rather than in a test.
        self.conn().getCapabilities()
        for pid in (self.daemon.pid, self.virtlogd_pid):
            _unpin(pid, cpus)
        self._save_seed()

    def _save_seed(self) -> None:
        """Keep this host's capabilities for the next hosts when they differ from the seed."""
        mine = self.base / "root/var/cache/libvirt/qemu/capabilities"
        if not mine.is_dir() or _same_files(mine, _SEED):
            return
        with _machine_lock():
            fresh = _SEED.with_name(f"{_SEED.name}.{self._token}")
            shutil.copytree(mine, fresh)
            old = _SEED.with_name(f"{_SEED.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if _SEED.exists():
                _SEED.rename(old)
            fresh.rename(_SEED)
            shutil.rmtree(old, ignore_errors=True)

    def _network(self) -> None:
        _ip("netns", "add", self.netns)
        self._netns_made = True
        with _machine_lock():
            used = _used_subnets()
            free = [x for x in range(1, 255) if x not in used]
            if not free:
                raise RuntimeError(f"no free {_SUBNET}.X.0/24 left on this machine")
            self.subnet = secrets.choice(free)
            _ip("link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_host)
            self._veth_made = True
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.veth_root)
            _hold_forwarding(self._token)
            self._forwarding = True
        # A static neighbour: with ARP, a cut link answers "No route to host" after ~3 s;
        # without it, packets vanish as they do behind a real partition.
        mac_host = Path(f"/sys/class/net/{self.veth_host}/address").read_text().strip()
        _ip("link", "set", self.veth_host, "netns", self.netns)
        _ip("link", "set", self.veth_root, "up")
        _ip("neigh", "replace", self.address, "lladdr", mac_host, "dev", self.veth_root,
            "nud", "permanent")
        ns = ("-n", self.netns)
        _ip(*ns, "addr", "add", f"{self.address}/24", "dev", self.veth_host)
        _ip(*ns, "link", "set", self.veth_host, "up")
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "route", "add", "default", "via", self.gateway)

    def answering(self, timeout: float = 5.0) -> bool:
        """Whether a fresh connection opens and answers within `timeout` seconds."""
        def probe() -> bool:
            conn = libvirt.open(self.uri)
            try:
                conn.getLibVersion()
            finally:
                conn.close()
            return True
        result, _ = call_with_deadline(probe, timeout)
        return result == "ok"

    def wait_answering(self, timeout: float = 30.0) -> None:
        wait_answering(who=f"{self.name}'s libvirtd", daemon=self.daemon,
                       log=self.base / "libvirtd.log",
                       answering=lambda: self.answering(timeout=min(5.0, timeout)),
                       timeout=timeout, interval=0.1)

    def conn(self) -> libvirt.virConnect:
        """A connection to this host, opened once and reopened when it has died."""
        if self._conn is None or not self._conn.isAlive():
            if self._conn is not None:
                self._dead.append(self._conn)  # see stop()
            self._conn = libvirt.open(self.uri)
        return self._conn

    def cut(self) -> None:
        """A partition: the host's end of the link goes down, and whatever the root
        namespace sends to it is dropped without an answer."""
        cut_link(self.netns, self.veth_host)
        self._is_cut = True

    def restore(self, timeout: float = 30.0) -> None:
        """The link comes back; returns once the host answers a fresh connection."""
        restore_link(self.netns, self.veth_host, self.gateway)
        self._is_cut = False
        self.wait_answering(timeout)

    def describe(self) -> dict[str, str]:
        """What another process needs to reach this host and to cut its link."""
        return {"name": self.name, "uri": self.uri, "address": self.address,
                "gateway": self.gateway, "netns": self.netns, "veth": self.veth_host}

    def destroy_all(self, prefix: str) -> list[str]:
        """Destroy and undefine every domain whose name starts with `prefix`, and check
        that none is left; returns the names removed."""
        return remove_domains(self.conn(), prefix)

    def stop(self) -> None:
        """Stop every process of the host, by PID, and remove its namespace, link and
        files. Tolerant of a partial start and of a cut link."""
        if self._is_cut and self._netns_made:
            restore_link(self.netns, self.veth_host, self.gateway)
            self._is_cut = False
        # Closing a remote connection is an RPC: across a cut link (or with a peer that
        # vanished) it blocks until TCP gives up, minutes later, and dropping the last
        # reference closes it. So close them here, from threads that we may abandon.
        conns = [*self._dead, *([self._conn] if self._conn is not None else [])]
        self._conn, self._dead = None, []
        for conn in conns:
            call_with_deadline(conn.close, 5.0)
        del conns
        if self.daemon is not None:
            if self.daemon.poll() is None:
                self.daemon.send_signal(signal.SIGTERM)
                try:
                    self.daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait()
            self.daemon = None
        if self._netns_made:
            # QEMU guests and virtlogd: every process left in the namespace is one of ours.
            self._end(self._netns_pids())
        if self.virtlogd_pid is not None:
            self._end([self.virtlogd_pid])
            self.virtlogd_pid = None
        if self._veth_made:
            _ip("link", "del", self.veth_root, check=False)
            self._veth_made = False
        if self._netns_made:
            _ip("netns", "del", self.netns, check=False)
            self._netns_made = False
        if self._forwarding:
            with _machine_lock():
                _release_forwarding(self._token)
            self._forwarding = False
        self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def _netns_pids(self) -> list[int]:
        proc = _ip("netns", "pids", self.netns, check=False)
        return [int(word) for word in proc.stdout.split() if word.isdigit()]

    @staticmethod
    def _end(pids: list[int], timeout: float = 15.0) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for pid in pids:
            while _pid_alive(pid) and not _reaped(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid) and not _reaped(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def cut_link(netns: str, veth: str) -> None:
    _ip("-n", netns, "link", "set", veth, "down")


def restore_link(netns: str, veth: str, gateway: str) -> None:
    _ip("-n", netns, "link", "set", veth, "up")
    # Taking the link down removed the namespace's default route with it.
    _ip("-n", netns, "route", "replace", "default", "via", gateway)


def _unpin(pid: int, cpus: set[int]) -> None:
    """Let every thread of `pid` run on `cpus` again."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def _same_files(one: Path, other: Path) -> bool:
    if not other.is_dir():
        return False
    names = sorted(p.name for p in one.iterdir())
    if names != sorted(p.name for p in other.iterdir()):
        return False
    return all((one / name).read_bytes() == (other / name).read_bytes() for name in names)


def _reaped(pid: int) -> bool:
    """True once `pid` is a zombie (exited, its parent has not collected it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def sweep_stale() -> list[str]:
    """Remove the hosts of test sessions that died without stopping them (kill -9): every
    `rcl-XXXXXX-N` namespace whose folder names an owner process that no longer runs.
    Returns the namespaces removed."""
    removed: list[str] = []
    for line in _ip("netns", "list").stdout.splitlines():
        netns = line.split()[0] if line.split() else ""
        if not re.fullmatch(r"rcl-[0-9a-f]{6}-\d+", netns):
            continue
        folders = list(Path("/tmp").glob(f"{netns}-*"))
        owners = [folder / "owner" for folder in folders if (folder / "owner").is_file()]
        if not owners or any(_pid_alive(int(owner.read_text())) for owner in owners):
            continue
        NetnsHost._end([int(word) for word in _ip("netns", "pids", netns, check=False)
                        .stdout.split() if word.isdigit()])
        run, index = netns.split("-")[1:]
        _ip("link", "del", f"rcl{run}{index}a", check=False)
        _ip("netns", "del", netns, check=False)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        removed.append(netns)
    if removed:
        with _machine_lock():
            _release_forwarding("none")
    return removed


def start_hosts(names: list[str], timeout: float = 60.0) -> list[NetnsHost]:
    """Start one NetnsHost per name, in parallel; on any failure, stop them all and raise."""
    sweep_stale()
    run = secrets.token_hex(3)
    hosts = [NetnsHost(name, netns=f"rcl-{run}-{i}", veth=f"rcl{run}{i}")
             for i, name in enumerate(names, start=1)]
    errors: list[BaseException] = []

    def start(host: NetnsHost) -> None:
        try:
            host.start(timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        stop_hosts(hosts)
        raise errors[0]
    return hosts


def stop_hosts(hosts: list[NetnsHost]) -> None:
    for host in hosts:
        host.stop()
