"""End-to-end fixtures: the real libvirtd (qemu:///system), tiny real guests, and the
installed `reconcile` command driven the way a user drives it.

Every domain a test creates is named with that test's own prefix ("t-<8 hex>-") and is
destroyed and undefined (keeping NVRAM) when the test ends, pass or fail. No other domain
on the host is ever touched. Every test here is marked `e2e`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from .support import (
    HERE,
    IMAGES,
    REPO,
    URI,
    Document,
    Manifests,
    OnceRunner,
    Pass,
    Runner,
    VMBuilder,
    clean_env,
    command,
    describe,
    parse_report,
    remove_domains,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# --- the daemon ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def conn() -> Iterator[libvirt.virConnect]:
    """A connection to the system libvirtd, started first when it is not running."""
    up = subprocess.run(["bash", str(REPO / "scripts" / "libvirtd-up.sh")],
                        capture_output=True, text=True, timeout=120, check=False)
    if up.returncode != 0:
        pytest.fail(f"scripts/libvirtd-up.sh exited {up.returncode}: {up.stderr.strip()}")
    kvm = Path("/dev/kvm")
    # Without this, libvirt re-probes QEMU on every define (~40 s each).
    if kvm.exists() and os.geteuid() == 0 and kvm.stat().st_mode & 0o006 != 0o006:
        kvm.chmod(0o666)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(URI)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def virt_type() -> str:
    return "kvm" if Path("/dev/kvm").exists() else "qemu"


@pytest.fixture
def prefix(conn: libvirt.virConnect) -> Iterator[str]:
    """A unique domain-name prefix for one test; its domains are removed afterwards."""
    value = f"t-{secrets.token_hex(4)}-"
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
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(), check=False)
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
