"""Helpers of the service tests: a private libvirtd, the service as a subprocess, a
NOTIFY_SOCKET of our own, manifests, and waiting on conditions with deadlines.

The private libvirtd ("sandbox") runs in its own mount namespace, with private /run,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, /etc/libvirt/qemu (domains and
networks) and /etc/libvirt/storage (pools), and its
socket in a folder of ours. It is a real libvirtd with real QEMU guests, but it holds only
this suite's domains, so a `--prune` service cannot touch another run's domains, and it can
be stopped and started (a daemon restart) without disturbing anyone else's tests.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import libvirt

from tests.waiting import wait_until

RECONCILE = Path(sys.executable).parent / "reconcile"
VIRT_TYPE = "kvm" if Path("/dev/kvm").exists() else "qemu"

START_SCRIPT = r"""#!/bin/sh
# Runs inside `unshare --mount`: make the libvirt folders private, then become libvirtd.
# Usage: start.sh BASE [LIBVIRTD OPTION...]
set -e
base=$1
shift
mount --make-rprivate /
for dir in run var/lib/libvirt var/cache/libvirt var/log/libvirt etc/libvirt/qemu \
           etc/libvirt/storage; do
    mkdir -p "$base/root/$dir" "/$dir"
    mount --bind "$base/root/$dir" "/$dir"
done
mkdir -p /run/libvirt/qemu /var/lib/libvirt/qemu /var/lib/libvirt/images \
         /var/cache/libvirt/qemu /var/log/libvirt/qemu
if [ -d "$base/capabilities" ]; then
    cp -a "$base/capabilities" /var/cache/libvirt/qemu/  # spares a QEMU probe of ~4 s
fi
virtlogd &
echo $! > "$base/virtlogd.pid"
exec libvirtd "$@" -f "$base/libvirtd.conf" -p /run/libvirtd.pid
"""




# --- the private libvirtd --------------------------------------------------------------

class Sandbox:
    """A private libvirtd; see the module docstring. Needs root and unshare(1)."""

    def __init__(self, conf: str = "") -> None:
        """`conf`: more libvirtd.conf settings for this daemon."""
        self.conf = conf
        # A short path: a unix socket path must fit in 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="rcl-", dir="/tmp"))
        self.socket_dir = self.base / "sock"
        self.uri = f"qemu+unix:///system?socket={self.socket_dir}/libvirt-sock"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.virtlogd_pid: int | None = None
        self._log = open(self.base / "libvirtd.log", "ab")  # noqa: SIM115 - closed in close()

    def start(self) -> None:
        self.socket_dir.mkdir()
        (self.base / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.socket_dir}"\n{self.conf}')
        script = self.base / "start.sh"
        script.write_text(START_SCRIPT)
        script.chmod(0o755)
        caps = Path("/var/cache/libvirt/qemu/capabilities")
        if caps.is_dir():
            shutil.copytree(caps, self.base / "capabilities")
        self.daemon = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", str(script), str(self.base)],
            stdout=self._log, stderr=self._log)
        self.wait_answering()
        self.virtlogd_pid = int((self.base / "virtlogd.pid").read_text())

    def answering(self) -> bool:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return False
        conn.close()
        return True

    def wait_answering(self, timeout: float = 30.0) -> None:
        def up() -> bool:
            if self.daemon is not None and self.daemon.poll() is not None:
                log = (self.base / "libvirtd.log").read_text(errors="replace")
                raise AssertionError(f"the private libvirtd exited {self.daemon.returncode}:\n"
                                     f"{log[-2000:]}")
            return self.answering()
        wait_until(up, timeout, what="the private libvirtd to answer")

    def stop_daemon(self) -> None:
        """SIGTERM libvirtd (guests keep running) and wait for it to exit."""
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait(timeout=30)
        self.daemon = None

    def start_daemon(self) -> None:
        """Start libvirtd again in the same mount namespace (virtlogd keeps it alive)."""
        assert self.virtlogd_pid is not None and self.daemon is None
        self.daemon = subprocess.Popen(
            ["nsenter", "-t", str(self.virtlogd_pid), "-m", "libvirtd",
             "-f", str(self.base / "libvirtd.conf"), "-p", "/run/libvirtd.pid"],
            stdout=self._log, stderr=self._log)
        self.wait_answering()

    def ensure_running(self) -> None:
        if self.daemon is None or self.daemon.poll() is not None:
            self.daemon = None
            self.start_daemon()

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            try:
                conn = libvirt.open(self.uri)
                for dom in conn.listAllDomains(0):
                    remove_domain(conn, dom.name())
                conn.close()
            except libvirt.libvirtError:
                pass
            self.stop_daemon()
        if self.virtlogd_pid is not None:
            try:
                os.kill(self.virtlogd_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)


def remove_domain(conn: libvirt.virConnect, name: str) -> None:
    """Destroy and undefine `name` (keeping NVRAM); 'already done' is fine."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError:
        pass
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
    except libvirt.libvirtError:
        pass


# --- reading domains back ----------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    name: str
    id: int
    running: bool
    persistent: bool
    memory_kib: int  # of the saved definition

    @property
    def memory_mib(self) -> int:
        return self.memory_kib // 1024


def read_domain(conn: libvirt.virConnect, name: str) -> Domain | None:
    try:
        dom = conn.lookupByName(name)
        state = dom.state()[0]
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        persistent = bool(dom.isPersistent())
        ident = dom.ID()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    memory = ET.fromstring(xml).find("memory")
    assert memory is not None and memory.text is not None
    factor = {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}[memory.get("unit", "KiB")]
    return Domain(name=name, id=ident, running=state == libvirt.VIR_DOMAIN_RUNNING,
                  persistent=persistent, memory_kib=int(memory.text) * factor)


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"virsh {' '.join(args)}: {proc.stderr.strip()}"
    return proc


# --- manifests -------------------------------------------------------------------------------

def vm_manifest(name: str, *, memory: str = "64MiB", state: str = "running",
                stop_timeout: int = 0, extra: str = "") -> str:
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  state: {state}\n  memory: {memory}\n  vcpus: 1\n  type: {VIRT_TYPE}\n"
            f"  stopTimeout: {stop_timeout}\n{extra}")


def write_atomically(path: Path, text: str) -> None:
    """As careful editors and config tools do: a hidden temporary file, then a rename."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- sd_notify ---------------------------------------------------------------------------------

class NotifySink:
    """A NOTIFY_SOCKET of our own (abstract namespace) that keeps every message."""

    def __init__(self) -> None:
        self.address = f"@reconcile-test-{secrets.token_hex(6)}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.address[1:])
        self._socket.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 30.0,
                 what: str = "a notify message") -> dict[str, str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.messages}")
                self._cond.wait(remaining)

    def with_key(self, key: str) -> list[dict[str, str]]:
        with self._cond:
            return [message for message in self.messages if key in message]

    def close(self) -> None:
        self._closed = True
        self._socket.close()


# --- the service as a subprocess ---------------------------------------------------------------

class ServiceProcess:
    """`reconcile` (the service) over one manifest folder, with our NOTIFY_SOCKET."""

    def __init__(self, *, manifests: Path, uri: str, lock_dir: Path, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.notify = NotifySink()
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("LIBVIRT_DEFAULT_URI", "RECONCILE_MANIFESTS",
                                      "RECONCILE_LOCK_DIR", "WATCHDOG_USEC", "WATCHDOG_PID",
                                      "JOURNAL_STREAM")}
        environment.update({"NOTIFY_SOCKET": self.notify.address, "PYTHONUNBUFFERED": "1"})
        environment.update(env or {})
        self.argv = [str(RECONCILE), "-m", str(manifests), "-c", uri, "--lock-dir",
                     str(lock_dir), "-v", *args]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=environment)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 30.0, *, count: int = 1) -> list[str]:
        """Wait until `count` stderr lines match the regex `pattern`; return them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"the service exited {self.proc.returncode} before "
                                         f"logging /{pattern}/:\n{self.log_unlocked()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for /{pattern}/ in the log:\n"
                                         f"{self.log_unlocked()}")
                self._cond.wait(min(remaining, 0.5))

    def log_unlocked(self) -> str:
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        with self._cond:
            return [line for line in self.lines if regex.search(line)]

    def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        return self.notify.wait_for(lambda m: m.get("READY") == "1", timeout, "READY=1")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=5)
            self.notify.close()
        return code
