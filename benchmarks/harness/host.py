"""The libvirt host under test, seen through the benchmark's own prefix.

Every domain the benchmark creates is named `bench-<8 hex>-...` (`new_prefix`); `Host`
counts the other domains on the host and never touches them. `bench.py` opens one `Host`,
runs the sections inside `interrupts_raise()` (SIGTERM ends it like Ctrl-C) and calls
`clean_up` in its `finally`: it stops the children still running and destroys and
undefines every domain with the prefix, whatever ended the run. The sections call
`Host.others`, `active`, `max_memory_kib` and `remove`; `prepare_kvm` picks the guests'
virtualisation type.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import statistics
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import libvirt

from floors.converge import domain_xml  # the floor's own tiny guest
from harness.runs import BenchError, Json, stop_children


def new_prefix() -> str:
    """A fresh name prefix for one benchmark run's domains: bench-<8 hex>-."""
    return f"bench-{secrets.token_hex(4)}-"


class Host:
    """The libvirt host, seen through our prefix: we count others, we touch only ours."""

    def __init__(self, uri: str, prefix: str):
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.uri = uri
        self.prefix = prefix
        self.conn: Any = libvirt.open(uri)

    def names(self) -> list[str]:
        names = []
        for dom in self.conn.listAllDomains(0):
            try:
                names.append(dom.name())
            except libvirt.libvirtError:
                continue
        return names

    def others(self) -> Json:
        """How busy the host is with domains that are not ours (other users, tests)."""
        total = active = 0
        for dom in self.conn.listAllDomains(0):
            try:
                if dom.name().startswith(self.prefix):
                    continue
                total += 1
                active += bool(dom.isActive())
            except libvirt.libvirtError:
                continue
        return {"domains": total, "running": active, "loadavg": list(os.getloadavg())}

    def active(self, names: Sequence[str]) -> int:
        running = 0
        for name in names:
            try:
                running += bool(self.conn.lookupByName(name).isActive())
            except libvirt.libvirtError:
                pass
        return running

    def max_memory_kib(self, name: str) -> int:
        return int(self.conn.lookupByName(name).maxMemory())

    def remove(self, names: Sequence[str] | None = None) -> int:
        """Destroy and undefine our domains (all of them, or `names`), in parallel."""
        ours = [n for n in (self.names() if names is None else names)
                if n.startswith(self.prefix)]
        if ours:
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(self._remove_one, ours))
        left = [n for n in self.names() if n in set(ours)]
        if left:
            raise BenchError(f"domains left behind: {left[:5]}")
        return len(ours)

    def _remove_one(self, name: str) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                dom = self.conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # a busy domain (its job lock is held): try again

    def destroy_seconds(self, virt_type: str, runs: int = 3) -> float:
        """Median time of libvirt's destroy of one running tiny guest: a fact of the host
        that every change pass pays (it waits until the QEMU process is reaped)."""
        name = f"{self.prefix}probe"
        dom = self.conn.defineXML(domain_xml(name, memory_mib=64, virt_type=virt_type))
        took = []
        try:
            for _ in range(runs):
                dom.create()
                started = time.perf_counter()
                dom.destroy()
                took.append(time.perf_counter() - started)
        finally:
            self.remove([name])
        return statistics.median(took)

    def close(self) -> None:
        self.conn.close()


def kvm_usable() -> bool:
    return os.path.exists("/dev/kvm") and os.stat("/dev/kvm").st_mode & 0o006 == 0o006


def prepare_kvm() -> str:
    """kvm when /dev/kvm is usable by QEMU's user; without that every define takes ~40 s."""
    if not os.path.exists("/dev/kvm"):
        return "qemu"
    if not kvm_usable():
        if os.geteuid() != 0:
            raise BenchError("/dev/kvm is not usable by QEMU's user: chmod 0666 /dev/kvm")
        os.chmod("/dev/kvm", 0o666)
    return "kvm"


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) end the benchmark like Ctrl-C does, so
    the cleanup in `finally` runs."""
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def clean_up(*, host: Host | None, prefix: str, tmp: Path) -> None:
    """Whatever ended the run: stop our children, remove our domains, delete `tmp`.
    Ctrl-C is ignored meanwhile, so that the cleanup finishes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_children()
    if host is not None:
        removed = host.remove()
        print(f"cleanup: removed {removed} leftover domain(s) named {prefix}*"
              if removed else f"cleanup: no domain named {prefix}* is left")
        host.close()
    shutil.rmtree(tmp, ignore_errors=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
