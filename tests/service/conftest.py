"""Fixtures of the service tests. The end-to-end ones share one private libvirtd
(support.Sandbox) for the session; every test's domains carry its own prefix and are
removed when it ends, pass or fail."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from .support import Domain, Sandbox, ServiceProcess, read_domain, remove_domain


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0 or shutil.which("libvirtd") is None or shutil.which("unshare") is None:
        pytest.skip("needs root, libvirtd and unshare(1) for a private libvirtd")
    kvm = Path("/dev/kvm")
    # Without this, libvirt re-probes QEMU on every define (~40 s each).
    if kvm.exists() and kvm.stat().st_mode & 0o006 != 0o006:
        kvm.chmod(0o666)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    host = Sandbox()
    try:
        host.start()
        yield host
    finally:
        host.close()


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


@pytest.fixture
def prefix() -> str:
    return f"t-{secrets.token_hex(4)}-"


@pytest.fixture
def host(sandbox: Sandbox, prefix: str) -> Iterator[Host]:
    sandbox.ensure_running()
    view = Host(sandbox)
    yield view
    sandbox.ensure_running()
    view.close()
    conn = libvirt.open(sandbox.uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                remove_domain(conn, dom.name())
    finally:
        conn.close()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


ServiceFactory = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(host: Host, manifests: Path, tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start `reconcile` (the service) over `manifests` on the sandbox; stopped at the end."""
    started: list[ServiceProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        service = ServiceProcess(manifests=manifests, uri=host.uri, lock_dir=tmp_path / "locks",
                                 args=args, env=env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
