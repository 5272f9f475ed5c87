"""A private libvirtd ("sandbox") for tests that restart or kill the daemon, or run a
`--prune` service, without disturbing anyone else's work on the host; the view of it that
one test holds; and the session fixture `sandbox`.

The sandbox runs in its own mount namespace, with private /run, /var/lib/libvirt,
/var/cache/libvirt, /var/log/libvirt, /etc/libvirt/qemu, /etc/libvirt/storage and
/etc/libvirt/secrets, and its socket in a folder of ours. It is a real libvirtd with real
QEMU guests, but it holds only the domains of the tests that use it, and it can be stopped
and started (a daemon restart) at will.

Used by tests/service and tests/reliability: their conftests import the `sandbox` fixture
(`from tests.support.sandbox import sandbox  # noqa: F401`) and wrap each test in
`host_for_test`, which removes that test's domains when it ends, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import libvirt
import pytest

from tests.support.domains import Domain, read_domain, remove_domains
from tests.support.libvirtd import prepare_for_guests, wait_answering, write_start_script


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
        script = write_start_script(self.base)
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
        wait_answering(who="the private libvirtd", daemon=self.daemon,
                       log=self.base / "libvirtd.log", answering=self.answering,
                       timeout=timeout)

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
        """Remove every domain left in the sandbox, stop its daemons (by PID) and delete
        its folder; a domain that could not be removed fails, after all of that."""
        problems: list[str] = []
        if self.daemon is not None and self.daemon.poll() is None:
            try:
                conn = libvirt.open(self.uri)
                try:
                    remove_domains(conn, "")
                finally:
                    conn.close()
            except (libvirt.libvirtError, AssertionError) as exc:
                problems.append(str(exc))
            self.stop_daemon()
        if self.virtlogd_pid is not None:
            try:
                os.kill(self.virtlogd_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._log.close()
        shutil.rmtree(self.base, ignore_errors=True)
        assert not problems, f"removing the sandbox's domains: {problems}"


class Host:
    """The sandbox as one test sees it: a connection that survives daemon restarts."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.uri = sandbox.uri
        self._conn: libvirt.virConnect | None = None

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            self._conn = libvirt.open(self.uri)
        return self._conn

    def read(self, name: str) -> Domain | None:
        """The domain now; a connection broken by a daemon restart is opened again."""
        try:
            return read_domain(self.conn, name)
        except libvirt.libvirtError:
            self.close()
            return read_domain(self.conn, name)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None


@contextmanager
def host_for_test(sandbox: Sandbox, prefix: str) -> Iterator[Host]:
    """The sandbox as one test sees it; afterwards the daemon is running again (even if
    the test killed it and failed) and rid of every domain named `prefix`*."""
    sandbox.ensure_running()
    view = Host(sandbox)
    try:
        yield view
    finally:
        view.close()
        sandbox.ensure_running()
        connection = libvirt.open(sandbox.uri)
        try:
            remove_domains(connection, prefix)
        finally:
            connection.close()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One private libvirtd for the session (skipped without root, libvirtd or unshare)."""
    if os.geteuid() != 0 or shutil.which("libvirtd") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, libvirtd and unshare(1) for a private libvirtd")
    prepare_for_guests()
    host = Sandbox()
    try:
        host.start()
        yield host
    finally:
        host.close()
