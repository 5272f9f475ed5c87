"""Fixtures of the many-hosts tests: three real libvirt hosts (kvm-1, kvm-2, kvm-3), each
its own libvirtd in its own network and mount namespaces (hosts.NetnsHost), a unique
domain name prefix per test, and the cleanup of that prefix's domains on every host."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import libvirt
import pytest

from tests.support.libvirtd import prepare_for_guests
from tests.support.prefix import unique_prefix

from .hosts import NetnsHost, start_hosts, stop_hosts

HOST_NAMES = ["kvm-1", "kvm-2", "kvm-3"]


class Hosts(dict[str, NetnsHost]):
    """The test hosts by name, in order."""

    def uris(self) -> dict[str, str]:
        return {name: host.uri for name, host in self.items()}


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to build network namespaces and run libvirtd"
    for tool in ("ip", "unshare", "libvirtd", "virtlogd"):
        if shutil.which(tool) is None:
            return f"needs {tool} to build test hosts"
    return None


@pytest.fixture(scope="session")
def hosts() -> Iterator[Hosts]:
    """Three hosts for the whole session.

    Session scope: the hosts cost little to build (~0.3 s, capabilities copied) but every
    test module of this package wants the same three, and they hold nothing between tests
    once `prefix` has removed a test's domains and `_mend_links` has brought back any
    link it cut. Tests must not stop a host's daemon for good; a test that needs that builds a
    NetnsHost of its own."""
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    prepare_for_guests()
    started = start_hosts(HOST_NAMES)
    _RUNNING.extend(started)
    try:
        yield Hosts((host.name, host) for host in started)
    finally:
        _RUNNING.clear()
        stop_hosts(started)


_RUNNING: list[NetnsHost] = []


@pytest.fixture(autouse=True)
def _mend_links() -> Iterator[None]:
    """After every test, bring back any link it cut (a failing test may not have)."""
    yield
    for host in _RUNNING:
        if host.is_cut:
            host.restore()


@pytest.fixture
def prefix(hosts: Hosts) -> Iterator[str]:
    """A unique domain name prefix; afterwards, every link is up again and the prefix's
    domains are gone from every host, pass or fail."""
    value = unique_prefix()
    yield value
    errors: list[str] = []
    for host in hosts.values():
        try:
            if host.is_cut:
                host.restore()
            host.destroy_all(value)
        except (libvirt.libvirtError, AssertionError) as exc:
            errors.append(f"{host.name}: {exc}")
    assert not errors, f"cleaning up {value}*: {errors}"
