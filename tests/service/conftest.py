"""Fixtures of the service tests. The end-to-end ones share one private libvirtd
(tests/support/sandbox.py) for the session; every test's domains carry its own prefix and
are removed when it ends, pass or fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.prefix import unique_prefix
from tests.support.sandbox import (
    Host,
    Sandbox,
    host_for_test,
    sandbox,  # noqa: F401 - the private libvirtd, a session fixture
)

from .support import ServiceProcess


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def host(sandbox: Sandbox, prefix: str) -> Iterator[Host]:  # noqa: F811 - the fixture above
    with host_for_test(sandbox, prefix) as view:
        yield view


@pytest.fixture
def manifests(manifest_dir: Path) -> Path:
    """The service's manifest folder: tests/conftest.py's `manifest_dir`."""
    return manifest_dir


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
