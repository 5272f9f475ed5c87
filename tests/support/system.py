"""Fixtures for tests on the system libvirtd (qemu:///system) with tiny real guests, and
the installed `reconcile` command driven the way a user drives it.

Every domain a test creates is named with that test's own prefix ("t-<8 hex>-") and is
destroyed and undefined (keeping NVRAM) when the test ends, pass or fail. No other domain
on the host is ever touched.

Used by tests/e2e and tests/reliability: their conftests import these fixtures by name
(`from tests.support.system import conn, prefix, ...  # noqa: F401`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.support.command import (
    OnceRunner,
    Pass,
    Runner,
    clean_env,
    command,
    describe,
    parse_report,
    run_captured,
)
from tests.support.disks import IMAGES
from tests.support.domains import remove_domains
from tests.support.libvirtd import (
    SYSTEM_URI,
    VIRT_TYPE,
    prepare_for_guests,
    system_libvirtd_up,
)
from tests.support.manifests import Document, Manifests, VMBuilder
from tests.support.prefix import unique_prefix


@pytest.fixture(scope="session")
def conn() -> Iterator[libvirt.virConnect]:
    """A connection to the system libvirtd, started first when it is not running."""
    system_libvirtd_up()
    prepare_for_guests()
    connection = libvirt.open(SYSTEM_URI)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def virt_type() -> str:
    return VIRT_TYPE


@pytest.fixture
def prefix(conn: libvirt.virConnect) -> Iterator[str]:
    """A unique domain-name prefix for one test; its domains are removed afterwards."""
    value = unique_prefix()
    yield value
    remove_domains(conn, value)


@pytest.fixture
def image_dir(conn: libvirt.virConnect, prefix: str) -> Iterator[Path]:
    """A folder under /var/lib/libvirt/images (libvirt-qemu can traverse it), removed
    after the test's domains are gone."""
    path = IMAGES / f"{prefix}disks"
    path.mkdir(mode=0o755)
    yield path
    remove_domains(conn, prefix)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def manifests(tmp_path: Path) -> Manifests:
    return Manifests(tmp_path / "manifests")


@pytest.fixture
def vm(prefix: str, virt_type: str) -> VMBuilder:
    """vm("a", memory="96MiB", updatePolicy="next-boot", uuid=...) → a manifest document
    for domain prefix+"a": a tiny guest (64 MiB, 1 vCPU, stopTimeout 0) unless told
    otherwise. A spec value of None drops that key."""
    def build(short: str, *, uuid: str | None = None, **spec: Any) -> Document:
        body: dict[str, Any] = {"memory": "64MiB", "vcpus": 1, "type": virt_type,
                                "stopTimeout": 0}
        body.update(spec)
        metadata: dict[str, Any] = {"name": prefix + short}
        if uuid:
            metadata["uuid"] = uuid
        return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": metadata,
                "spec": {key: value for key, value in body.items() if value is not None}}
    return build


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def run(manifests: Manifests, lock_dir: Path) -> Runner:
    """run(*args, check_exit=None) runs the installed `reconcile`, with -m (this test's
    manifest directory), -c qemu:///system and --lock-dir added unless given. Never
    may a traceback reach stderr."""
    def runner(*args: str, check_exit: int | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = command(args, manifests=manifests.path, lock_dir=lock_dir)
        proc = run_captured(argv, timeout=timeout, env=clean_env())
        assert "Traceback" not in proc.stderr, describe(proc)
        if check_exit is not None:
            assert proc.returncode == check_exit, describe(proc)
        return proc
    return runner


@pytest.fixture
def once(run: Runner) -> OnceRunner:
    """once(*args, check_exit=None) → Pass: `reconcile --once -o json ARGS`."""
    def runner(*args: str, check_exit: int | None = None) -> Pass:
        proc = run("--once", "-o", "json", *args, check_exit=check_exit)
        return Pass(proc, parse_report(proc))
    return runner
