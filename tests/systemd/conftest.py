"""Fixtures of the tests under a real systemd: one container for the session (systemd as
its PID 1, booted by systemd-nspawn over scripts/systemd-tree.sh's cached Debian tree),
the project installed in it with `make install`, and tests/service's private libvirtd
(its own mount namespace, only this suite's domains) with its socket folder bound at the
container's /run/libvirt, so the unit's own `-c qemu:///system` reaches it.

Each test gets `unit`: the installed reconcile.service stopped, with this test's options
in /etc/reconcile/reconcile.env, no drop-ins, an empty manifest folder and step log; it
is stopped again and the test's domains are removed when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.service.conftest import (
    prefix,  # noqa: F401 - a unique domain-name prefix per test
)
from tests.support.domains import remove_domains
from tests.support.sandbox import (
    Host,
    Sandbox,
    sandbox,  # noqa: F401 - the private libvirtd
)
from tests.support.waiting import wait_until

from .container import REPO, CannotBoot, Container, why_not

#: pip's cache for `make install` in the container, beside the tree (same folder).
PIP_CACHE = Path(os.environ.get("RECONCILE_NSPAWN_CACHE", "/var/cache/reconcile-test"),
                 "pip-nspawn")
MANIFESTS = "/etc/reconcile/manifests"
STEP_LOG = "/var/lib/reconcile/steps.jsonl"
DROP_IN = "/etc/systemd/system/reconcile.service.d/50-test.conf"
ARGS = f"-m {MANIFESTS} -c qemu:///system --resync 3600 --workers 4 --step-log {STEP_LOG}"

#: test name → lines to print at the end of the run (copied to docs/RELIABILITY.md).
FIGURES: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("systemd figures")
    for test, lines in FIGURES.items():
        terminalreporter.write_line(test)
        for line in lines:
            terminalreporter.write_line(f"    {line}")


@pytest.fixture(scope="session")
def tree() -> Path:
    reason = why_not()
    if reason is not None:
        pytest.skip(f"no container systemd here: {reason}")
    built = subprocess.run([str(REPO / "scripts/systemd-tree.sh")], capture_output=True,
                           text=True, check=False, timeout=900)
    assert built.returncode == 0, f"scripts/systemd-tree.sh failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def machine(tree: Path, sandbox: Sandbox) -> Iterator[Container]:  # noqa: F811
    """The container, with the project installed by `make install`."""
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    binds = {str(sandbox.socket_dir): "/run/libvirt", str(PIP_CACHE): "/root/.cache/pip"}
    with ExitStack() as stack:
        try:
            box = stack.enter_context(Container.boot(tree=tree, binds=binds))
        except CannotBoot as error:  # the machine cannot run a container systemd
            pytest.skip(f"no container systemd here: {error}")
        started = time.monotonic()
        box.run("make", "-C", "/src", "install", timeout=900)
        FIGURES["make install in the container"] = [
            f"{time.monotonic() - started:.0f} s (pip cache in {PIP_CACHE})"]
        yield box


@dataclass
class Unit:
    """reconcile.service in the container, as one test drives it."""

    box: Container
    host: Host
    cursor: str

    def systemctl(self, *args: str, check: bool = True,
                  timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        proc = self.box.run("systemctl", *args, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            journal = self.box.run("journalctl", "--no-pager", "-n", "40",
                                   f"--after-cursor={self.cursor}", check=False).stdout
            raise AssertionError(f"systemctl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}\n--- the journal\n{journal}")
        return proc

    def show(self, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", "reconcile.service", "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def prop(self, name: str) -> str:
        return self.show(name)[name]

    def main_pid(self) -> int:
        """The host's PID of the service's main process (0: none)."""
        pid = int(self.prop("MainPID"))
        return self.box.host_pid(pid) if pid else 0

    def journal(self, *match: str) -> list[dict[str, Any]]:
        """The journal's entries since this test began (`match`: journalctl matches)."""
        out = self.box.run("journalctl", "-o", "json", "--no-pager",
                           f"--after-cursor={self.cursor}", *match).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def messages(self) -> list[str]:
        """What the service itself wrote to the journal since this test began."""
        return [message_text(entry) for entry in self.journal("SYSLOG_IDENTIFIER=reconcile")]

    def systemd_messages(self) -> list[str]:
        """What systemd said about the unit since this test began."""
        return [message_text(entry) for entry in
                self.journal("_PID=1", "UNIT=reconcile.service")]

    def wait_message(self, needle: str, timeout: float = 60.0) -> str:
        def found() -> str | None:
            return next((line for line in self.messages() if needle in line), None)
        line = wait_until(found, timeout, interval=0.2, what=f"{needle!r} in the journal")
        assert line is not None
        return line

    def write_manifest(self, name: str, text: str) -> None:
        self.box.write(f"{MANIFESTS}/{name}.yaml", text)

    def steps(self) -> list[dict[str, Any]]:
        """The step log's entries (--step-log, one JSON object a line)."""
        out = self.box.run("sh", "-c", f"cat {STEP_LOG} 2>/dev/null || true").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


def message_text(entry: dict[str, Any]) -> str:
    """MESSAGE of a journal entry; journald gives bytes (a list) for non-UTF-8 text."""
    message = entry.get("MESSAGE", "")
    return bytes(message).decode(errors="replace") if isinstance(message, list) else str(message)


@pytest.fixture
def unit(machine: Container, sandbox: Sandbox, prefix: str) -> Iterator[Unit]:  # noqa: F811
    sandbox.ensure_running()
    box = machine
    reset = (f"systemctl stop reconcile.service; systemctl reset-failed reconcile.service; "
             f"rm -rf {MANIFESTS} /etc/systemd/system/reconcile.service.d {STEP_LOG}; "
             f"mkdir -p {MANIFESTS}; systemctl daemon-reload")
    box.run("sh", "-c", reset)
    box.write("/etc/reconcile/reconcile.env", f"RECONCILE_ARGS={ARGS}\n")
    cursor = json.loads(box.run("journalctl", "-o", "json", "-n", "1").stdout)["__CURSOR"]
    view = Unit(box=box, host=Host(sandbox), cursor=cursor)
    try:
        yield view
    finally:
        box.run("sh", "-c", reset)
        view.host.close()
        sandbox.ensure_running()
        connection = libvirt.open(sandbox.uri)
        try:
            remove_domains(connection, prefix)
        finally:
            connection.close()
