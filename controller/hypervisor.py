"""The libvirt edge: the only module that imports libvirt.

Called by the engine (observe, list, steps) and the CLI (connect). Every
libvirt error is classified here once, by its (code, domain), into the
exceptions of `errors.py`: not found, already exists, transient, connection
lost, or permanent. Each step method tolerates being already done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import libvirt

from . import domainxml
from .errors import (
    AlreadyExists,
    ConnectionLost,
    DomainNotFound,
    HypervisorError,
    PermanentError,
    TransientError,
)
from .model import Observed, Power

log = logging.getLogger(__name__)


def _code(name: str) -> int:
    return int(getattr(libvirt, name, -1))


_CONNECTION_CODES = {_code("VIR_ERR_NO_CONNECT"), _code("VIR_ERR_INVALID_CONN"),
                     _code("VIR_ERR_RPC"), _code("VIR_ERR_AUTH_FAILED")}
_CONNECTION_DOMAINS = {_code("VIR_FROM_RPC"), _code("VIR_FROM_REMOTE")}
_CONNECTION_WORDS = ("client socket is closed", "end of file while reading data",
                     "cannot write data", "cannot recv data", "connection reset",
                     "broken pipe", "no connection driver", "failed to connect socket")
_TRANSIENT_CODES = {_code("VIR_ERR_OPERATION_TIMEOUT"), _code("VIR_ERR_AGENT_UNRESPONSIVE"),
                    _code("VIR_ERR_RESOURCE_BUSY")}
_TRANSIENT_WORDS = ("cannot acquire state change lock", "timed out", "resource busy",
                    "job is already active")
_STATES = {
    _code("VIR_DOMAIN_RUNNING"): Power.RUNNING,
    _code("VIR_DOMAIN_BLOCKED"): Power.RUNNING,
    _code("VIR_DOMAIN_PAUSED"): Power.PAUSED,
    _code("VIR_DOMAIN_SHUTOFF"): Power.STOPPED,
}

_error_handler_installed = False


@dataclass(frozen=True)
class Snapshot:
    """All domains at one moment: taken once per pass, so that observing a VM whose
    lock nobody took since `started_ns` needs only its definitions and state."""

    started_ns: int  # time.time_ns() before the first listing call
    domains: dict[str, Any]  # name -> virDomain
    autostart: frozenset[str]
    persistent: frozenset[str]


def _silence_libvirt_stderr() -> None:
    """libvirt prints every error to stderr unless a handler is registered; we report our own."""
    global _error_handler_installed
    if not _error_handler_installed:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _error_handler_installed = True


def classify(exc: libvirt.libvirtError, what: str) -> HypervisorError:
    """Turn a libvirtError into one of ours, with a one-line message."""
    code = exc.get_error_code()
    domain = exc.get_error_domain()
    text = (exc.get_error_message() or str(exc)).strip().replace("\n", " ")
    message = f"{what}: {text} (libvirt error {code}, domain {domain})"
    lowered = text.lower()
    cls: type[HypervisorError]
    if code == _code("VIR_ERR_NO_DOMAIN"):
        cls = DomainNotFound
    elif "already exists" in lowered and code in (
            _code("VIR_ERR_OPERATION_FAILED"), _code("VIR_ERR_DOM_EXIST")):
        cls = AlreadyExists
    elif (code in _CONNECTION_CODES
          or (domain in _CONNECTION_DOMAINS and code in (
              _code("VIR_ERR_SYSTEM_ERROR"), _code("VIR_ERR_INTERNAL_ERROR")))
          or any(word in lowered for word in _CONNECTION_WORDS)):
        cls = ConnectionLost
    elif code in _TRANSIENT_CODES or any(word in lowered for word in _TRANSIENT_WORDS):
        cls = TransientError
    else:
        cls = PermanentError
    return cls(message, code=code, domain=domain)


def migration_uri(libvirt_uri: str | None) -> str | None:
    """Where QEMU sends a migration: the address the target's libvirt is reached at.
    Without it libvirt uses the target's own hostname, which other hosts may not
    resolve (or, on test hosts sharing one hostname, resolve to themselves)."""
    if not libvirt_uri:
        return None
    host = urlsplit(libvirt_uri).hostname
    if not host:
        return None
    return f"tcp://[{host}]" if ":" in host else f"tcp://{host}"


def _is_not_running(error: HypervisorError) -> bool:
    return error.code == _code("VIR_ERR_OPERATION_INVALID") and "not running" in str(error)


#: Calls one connection may have in flight. libvirtd stops reading a connection that has
#: `max_client_requests` (default 5) calls in flight, keepalive replies included, and its
#: keepalive drops the connection 30 s later: five slow calls at once (live migrations, a
#: hung QEMU's monitor) would cost every call on it. Four never stop it reading.
CALLS_PER_CONNECTION = 4


def connections_for(workers: int) -> int:
    """How many connections `workers` threads need to never queue in libvirtd."""
    return max(1, -(-workers // CALLS_PER_CONNECTION))


class _Line:
    """One connection and the calls in flight on it."""

    __slots__ = ("busy", "closer", "conn")

    def __init__(self, conn: Any):
        self.conn = conn
        self.busy = 0
        self.closer: Callable[[Any], None] | None = None  # once out of the pool


class _Lines:
    """A Hypervisor's connections: the first one (events, listings) and, when the
    workers need more than CALLS_PER_CONNECTION calls in flight, extra ones, opened in
    the background when first needed. Every call holds a slot of the connection it uses.
    """

    def __init__(self, most: int, opener: Callable[[], Any], where: str):
        self.most = most
        self._where = where
        self._opener = opener  # opens one more connection (raises ConnectionLost)
        self._lines: list[_Line] = []
        self._free = threading.Condition()
        self._generation = 0  # a reconnect starts a new one; late opens of an old one close
        self._opening = False
        self._cannot_grow = False

    def reset(self, first: Any) -> list[_Line]:
        """Start over with `first` (None: no connection); returns the lines it replaces,
        with the calls still in flight on each."""
        with self._free:
            old = self._lines
            self._lines = [_Line(first)] if first is not None else []
            self._generation += 1
            self._cannot_grow = False
            self._free.notify_all()
        return old

    def take(self, on: Any = None) -> _Line | None:
        """A slot on `on` (the connection of a domain handle; None when that connection
        is no longer ours) or, with on=None, on any of ours, waiting for one if need be."""
        with self._free:
            while True:
                if on is not None:
                    lines = [line for line in self._lines if line.conn is on]
                    if not lines:
                        return None  # the call fails with libvirt's own reason
                elif not self._lines:
                    raise ConnectionLost(f"not connected to {self._where}")
                else:  # the least busy: a domain handle's calls can only use its own
                    lines = sorted(self._lines, key=lambda line: line.busy)
                    if lines[0].busy >= CALLS_PER_CONNECTION // 2:
                        self._grow_locked()  # before the slots run out: opening takes a while
                line = next((line for line in lines if line.busy < CALLS_PER_CONNECTION), None)
                if line is not None:
                    line.busy += 1
                    return line
                self._free.wait()

    def in_flight(self) -> list[int]:
        with self._free:
            return [line.busy for line in self._lines]

    def give_back(self, line: _Line, *, failed: bool) -> None:
        """Free the slot; after a failed call, drop an extra connection that died. A
        connection out of the pool is closed when its last call returns."""
        close = None
        with self._free:
            line.busy -= 1
            if failed and line in self._lines[1:] and not _is_alive(line.conn):
                self._lines.remove(line)
                line.closer = _close_quietly
            if line.closer is not None and not line.busy and line not in self._lines:
                close, line.closer = line.closer, None
            self._free.notify_all()  # waiters may want different connections
        if close is not None:
            close(line.conn)

    def wait_idle(self, lines: list[_Line]) -> None:
        """Until no call is in flight on any of `lines` (already out of the pool)."""
        with self._free:
            while any(line.busy for line in lines):
                self._free.wait()

    def retire(self, line: _Line, closer: Callable[[Any], None]) -> None:
        """Close `line`, already out of the pool, now or when its last call returns:
        closing a connection under a call on it crashes libvirt's client."""
        with self._free:
            if line.busy:
                line.closer = closer
                return
        closer(line.conn)

    def _grow_locked(self) -> None:
        if self._opening or self._cannot_grow or len(self._lines) >= self.most:
            return
        self._opening = True
        threading.Thread(target=self._grow, args=(self._generation,), daemon=True,
                         name="libvirt-open").start()

    def _grow(self, generation: int) -> None:
        conn = None
        try:
            conn = self._opener()
        except ConnectionLost as error:
            log.debug("no extra libvirt connection: %s", error)
        with self._free:
            self._opening = False
            current = generation == self._generation and bool(self._lines)
            if conn is None:
                self._cannot_grow = current
            elif current:
                self._lines.append(_Line(conn))
                log.info("opened connection %d of %d to %s: more than %d calls wanted at once",
                         len(self._lines), self.most, self._where, CALLS_PER_CONNECTION)
                conn = None
            self._free.notify_all()
        if conn is not None:
            _close_quietly(conn)


def _is_alive(conn: Any) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


class Hypervisor:
    """A libvirt host: one connection (more when the worker threads want more than
    CALLS_PER_CONNECTION calls in flight), shared by the threads, reopened when lost."""

    def __init__(self, uri: str | None, *, readonly: bool = False,
                 keepalive: tuple[int, int] | None = None, connections: int = 1):
        """`connections`: at most this many, for calls by worker threads (see
        `connections_for`); the extra ones are opened only when the calls need them."""
        self.uri = uri
        self.readonly = readonly
        # (interval s, count): a remote host that stops answering fails calls after about
        # interval x (count + 1) s instead of TCP's minutes; needs start_event_loop() first.
        self.keepalive = keepalive
        self._conn: Any = None
        self._given_up: Any = None  # see give_up()
        self._lock = threading.Lock()
        self._lines = _Lines(connections, self._open_extra, uri or "libvirt")
        self._machines: dict[tuple[str, str | None, str], str] = {}
        self.calls = 0  # libvirt calls made, for benchmarks and -v

    # --- connection ------------------------------------------------------------

    def connect(self) -> None:
        """Open the connection; raise ConnectionLost with libvirt's reason if it fails."""
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        self._conn = self._open_one()
        if self.uri is None:
            self.uri = self._conn.getURI()
        self._retire(self._lines.reset(self._conn))

    def _open_one(self) -> Any:
        _silence_libvirt_stderr()
        where = self.uri or "the default libvirt URI"
        try:
            if self.readonly:
                conn = libvirt.openReadOnly(self.uri)
            else:
                conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            error = classify(exc, f"cannot connect to {where}")
            raise ConnectionLost(str(error), code=error.code, domain=error.domain) from exc
        if self.keepalive and event_loop_alive():
            try:
                conn.setKeepAlive(*self.keepalive)
            except libvirt.libvirtError as exc:  # local drivers have no keepalive
                log.debug("no keepalive on %s: %s", self.uri, exc)
        return conn

    def _open_extra(self) -> Any:
        # test:/// opens a fresh, separate hypervisor per connection (and has no limit).
        if (self.uri or "").startswith("test:"):
            raise ConnectionLost("the test driver shares no state between connections")
        return self._open_one()

    def reconnect(self, failed: Any = None) -> None:
        """Open a new connection, unless another thread already did: the current one
        is alive and is not `failed`.

        Calls still in flight on the old connection (a host that stopped answering) are
        waited for first: opening another connection beside them, or closing the old one
        under them, crashed libvirt's client (segfaults in libvirt.so and GLib).
        """
        with self._lock:
            if self._conn is not None and self._conn is not failed and self.alive():
                return
            self._conn = self._given_up = None
            old = self._lines.reset(None)
            self._lines.wait_idle(old)
            self._retire(old)
            self._open_locked()

    def give_up(self) -> None:
        """Count the current connection as lost although libvirt has not said so (its
        calls stopped answering): the next `reconnect` replaces it."""
        self._given_up = self._conn

    def _retire(self, lines: list[_Line]) -> None:
        """Close replaced connections, each once no call waits on it any more (a host
        that stopped answering may hold one for as long as it is cut off)."""
        for index, line in enumerate(lines):
            self._lines.retire(line, self._forget if index == 0 else _close_quietly)

    def alive(self) -> bool:
        """Whether the current connection is open and its peer not known to be gone.
        A local check: no round trip to the daemon."""
        conn = self._conn
        return conn is not None and conn is not self._given_up and _is_alive(conn)

    def _forget(self, conn: Any) -> None:
        """Close a connection being replaced; errors of a dead one are moot."""
        _close_quietly(conn)

    def in_flight(self) -> list[int]:
        """Calls in flight on each open connection, the first one first."""
        return self._lines.in_flight()

    def current(self) -> Any:
        """The connection object in use now (to pass to `reconnect(failed=...)`)."""
        return self._conn

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still turn out dead on the next call)."""
        return self._conn is not None

    def close(self) -> None:
        with self._lock:
            self._conn = None
            self._retire(self._lines.reset(None))

    @property
    def conn(self) -> Any:
        conn = self._conn
        if conn is None:
            raise ConnectionLost(f"not connected to {self.uri or 'libvirt'}")
        return conn

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except libvirt.libvirtError as exc:
            raise classify(exc, what) from exc

    @contextmanager
    def _slot(self, on: Any = None) -> Iterator[Any]:
        """A connection to call libvirt on, holding one of its call slots meanwhile:
        `on` (a domain handle's connection) or any of ours."""
        if on is None and self._conn is None:
            raise ConnectionLost(f"not connected to {self.uri or 'libvirt'}")
        line = self._lines.take(on)
        if line is None:  # a handle of a connection already replaced: its calls fail
            yield on
            return
        failed = True
        try:
            yield line.conn
            failed = False
        finally:
            self._lines.give_back(line, failed=failed)

    @contextmanager
    def _call(self, what: str, on: Any = None) -> Iterator[Any]:
        """`_slot` and `_translate` together: the usual way to call libvirt."""
        with self._slot(on) as conn, self._translate(what):
            yield conn

    # --- reading ---------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every domain, with its autostart and persistence, in three bulk calls."""
        started = time.time_ns()
        with self._call("cannot list domains") as conn:
            self.calls += 3
            domains = conn.listAllDomains(0)
            autostart = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
            persistent = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
        return Snapshot(
            started_ns=started,
            domains={dom.name(): dom for dom in domains},  # name() needs no round trip
            autostart=frozenset(dom.name() for dom in autostart),
            persistent=frozenset(dom.name() for dom in persistent),
        )

    def observe(self, name: str, snapshot: Snapshot | None = None) -> Observed:
        """The domain as libvirt has it now. DomainNotFound anywhere means absent.

        With a `snapshot`, existence, autostart and persistence come from it and
        only the definitions and power state are read: one call for a stopped
        domain, three for a running one. The caller passes a snapshot only when
        no reconcile run can have changed the domain since it was taken.
        """
        if snapshot is not None:
            dom = snapshot.domains.get(name)
            if dom is None:
                return Observed(name=name, exists=False)
            try:
                return self._observe_known(name, dom, snapshot)
            except DomainNotFound:
                pass  # gone, or replaced by another domain of that name: look it up
        try:
            return self._observe(name)
        except DomainNotFound:
            return Observed(name=name, exists=False)

    def _xml_flags(self, inactive: bool) -> int:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        if not self.readonly:
            flags |= libvirt.VIR_DOMAIN_XML_SECURE
        return flags

    def _observe_known(self, name: str, dom: Any, snapshot: Snapshot) -> Observed:
        with self._call(f"cannot read domain '{name}'", on=dom.connect()):
            self.calls += 1
            current_xml = dom.XMLDesc(self._xml_flags(inactive=False))
        current = domainxml.parse_domain(current_xml)
        if not current.active:  # an inactive domain's current XML is its saved one
            return Observed(name=name, exists=True, power=Power.STOPPED, persistent=True,
                            autostart=name in snapshot.autostart, saved=current,
                            live=None, saved_xml=current_xml)
        with self._call(f"cannot read domain '{name}'", on=dom.connect()):
            self.calls += 2
            power = _STATES.get(dom.state()[0], Power.OTHER)
            saved_xml = dom.XMLDesc(self._xml_flags(inactive=True))
        return Observed(name=name, exists=True, power=power,
                        persistent=name in snapshot.persistent,
                        autostart=name in snapshot.autostart,
                        saved=domainxml.parse_domain(saved_xml), live=current,
                        saved_xml=saved_xml)

    def _observe(self, name: str) -> Observed:
        with self._call(f"cannot read domain '{name}'") as conn:
            self.calls += 1
            dom = conn.lookupByName(name)
            self.calls += 2
            state = dom.state()[0]
            persistent = bool(dom.isPersistent())
            power = _STATES.get(state, Power.OTHER)
            self.calls += 1
            saved_xml = dom.XMLDesc(self._xml_flags(inactive=True))
            live_xml = None
            if power.active:
                self.calls += 1
                live_xml = dom.XMLDesc(self._xml_flags(inactive=False))
            autostart = False
            if persistent:
                self.calls += 1
                autostart = bool(dom.autostart())
        return Observed(
            name=name,
            exists=True,
            power=power,
            persistent=persistent,
            autostart=autostart,
            saved=domainxml.parse_domain(saved_xml),
            live=domainxml.parse_domain(live_xml) if live_xml else None,
            saved_xml=saved_xml,
        )

    def managed_domains(self, snapshot: Snapshot | None = None,
                        skip: frozenset[str] = frozenset()) -> set[str]:
        """Names of the domains that carry reconcile's ownership marker, leaving out
        (not reading) the names in `skip`."""
        if snapshot is None:
            snapshot = self.snapshot()
        managed = set()
        for name, dom in snapshot.domains.items():
            if name in skip:
                continue
            try:
                with self._call("cannot read a domain", on=dom.connect()):
                    self.calls += 1
                    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            except DomainNotFound:
                continue  # vanished since the listing
            if domainxml.parse_domain(xml).managed:
                managed.add(name)
        return managed

    def disk_users(self, paths: set[str], *, exclude: str) -> dict[str, str]:
        """Which of `paths` (resolved) a domain other than `exclude` has as a disk."""
        users: dict[str, str] = {}
        with self._call("cannot list domains") as conn:
            self.calls += 1
            domains = conn.listAllDomains(0)
        for dom in domains:
            name = dom.name()
            if name == exclude:
                continue
            try:
                with self._call(f"cannot read domain '{name}'", on=dom.connect()):
                    self.calls += 1
                    xml = dom.XMLDesc(0)
                config = domainxml.parse_domain(xml)
            except DomainNotFound:
                continue
            for disk in config.disks:
                if disk.source and os.path.realpath(disk.source) in paths:
                    users.setdefault(os.path.realpath(disk.source), name)
        return users

    def domain_names(self, *, unmanaged_only: bool = False) -> list[str]:
        """Every domain's name, or those without reconcile's ownership marker."""
        snapshot = self.snapshot()
        names = sorted(snapshot.domains)
        if unmanaged_only:
            managed = self.managed_domains(snapshot)
            names = [name for name in names if name not in managed]
        return names

    def canonical_machine(self, virt_type: str, arch: str | None, machine: str) -> str:
        """libvirt's canonical name for a machine alias ('pc' → 'pc-i440fx-7.2')."""
        key = (virt_type, arch, machine)
        if key not in self._machines:
            canonical = machine
            try:
                self.calls += 1
                with self._slot() as conn:
                    caps = conn.getDomainCapabilities(None, arch, machine, virt_type, 0)
                canonical = ET.fromstring(caps).findtext("machine") or machine
            except (libvirt.libvirtError, ET.ParseError):
                # Refused on a read-only connection (--dry-run); absent from test:///.
                canonical = self._canonical_from_capabilities(virt_type, arch, machine)
            self._machines[key] = canonical
        return self._machines[key]

    def _canonical_from_capabilities(self, virt_type: str, arch: str | None,
                                     machine: str) -> str:
        """The same answer from the host capabilities, which read-only connections may read."""
        try:
            self.calls += 1
            with self._slot() as conn:
                caps = conn.getCapabilities()
            root = ET.fromstring(caps)
        except (libvirt.libvirtError, ET.ParseError):
            return machine
        arch = arch or root.findtext("host/cpu/arch")
        for arch_el in root.iterfind("guest/arch"):
            if arch_el.get("name") != arch:
                continue
            typed = [m for d in arch_el.iterfind("domain") if d.get("type") == virt_type
                     for m in d.iterfind("machine")]
            for candidate in typed + arch_el.findall("machine"):
                if (candidate.text or "").strip() == machine:
                    return candidate.get("canonical") or machine
        return machine

    # --- steps: each one tolerates being already done ---------------------------

    def _domain(self, conn: Any, name: str) -> Any:
        self.calls += 1
        return conn.lookupByName(name)

    def define(self, xml: str) -> None:
        with self._call("cannot define domain") as conn:
            self.calls += 1
            conn.defineXML(xml)

    def start(self, name: str) -> None:
        try:
            with self._call(f"cannot start domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self.calls += 1
                if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    self.calls += 1
                    dom.resume()
                else:
                    self.calls += 1
                    dom.create()
        except PermanentError as error:
            if not (error.code == _code("VIR_ERR_OPERATION_INVALID")
                    and "already running" in str(error)):
                raise

    def destroy(self, name: str) -> None:
        try:
            with self._call(f"cannot destroy domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self.calls += 1
                dom.destroy()
        except DomainNotFound:
            pass  # a transient domain is gone once destroyed
        except PermanentError as error:
            if not _is_not_running(error):
                raise

    def shutdown(self, name: str, timeout: float, poll: float = 0.25) -> bool:
        """Ask the guest to shut down; destroy it if it is still up after `timeout`.

        Returns True when the guest shut down by itself.
        """
        try:
            with self._call(f"cannot shut down domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self.calls += 1
                dom.shutdown()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._call(f"cannot read domain '{name}'", on=dom.connect()):
                    self.calls += 1
                    if not dom.isActive():
                        return True
                time.sleep(poll)
        except DomainNotFound:
            return True
        except PermanentError as error:
            if _is_not_running(error):
                return True
            raise
        log.info("%s did not shut down within %ss; destroying it", name, timeout)
        self.destroy(name)
        return False

    def undefine(self, name: str) -> None:
        """Undefine, keeping NVRAM and TPM state (and refusing if a managed save exists)."""
        keep = [
            libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 0),
            libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM,
            0,
        ]
        unsupported = (_code("VIR_ERR_INVALID_ARG"), _code("VIR_ERR_NO_SUPPORT"))
        for index, flags in enumerate(keep):
            try:
                with self._call(f"cannot undefine domain '{name}'") as conn:
                    dom = self._domain(conn, name)
                    self.calls += 1
                    dom.undefineFlags(flags)
                return
            except DomainNotFound:
                return
            except PermanentError as error:
                if error.code == _code("VIR_ERR_OPERATION_INVALID") and "transient" in str(error):
                    return  # only a persistent domain has a definition to remove
                if error.code in unsupported and index + 1 < len(keep):
                    continue
                raise

    def set_autostart(self, name: str, enabled: bool) -> None:
        with self._call(f"cannot set autostart of domain '{name}'") as conn:
            dom = self._domain(conn, name)
            self.calls += 1
            dom.setAutostart(1 if enabled else 0)

    def migrate(self, name: str, target: Hypervisor, *, persist_xml: str) -> None:
        """Live-migrate running domain `name` to `target`: persistent there with
        `persist_xml` as its saved definition, undefined here. libvirt rolls a failed
        migration back; the guest keeps running here."""
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persist_xml}
        address = migration_uri(target.uri)
        if address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = address
        with self._call(f"cannot migrate domain '{name}' to {target.uri}") as conn:
            dom = self._domain(conn, name)
            self.calls += 1
            # The target's own calls inside migrate3 (prepare, finish) are short and take
            # no slot there, so two moves in opposite directions never wait on each other.
            dom.migrate3(target.conn, params, flags)

    def set_memory_live(self, name: str, kib: int) -> None:
        """Live balloon request; the guest may or may not follow it."""
        try:
            with self._call(f"cannot set memory of domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self.calls += 1
                dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except PermanentError as error:
            if not _is_not_running(error):
                raise


# --- events and connection watching (service) ---
#
# Used by the service only. libvirt delivers events and notices a dead connection only
# through an event loop that was registered before the connection was opened and that a
# thread keeps running. Callbacks run in that thread: they must only record what happened
# (enqueue a name, set a flag), never call back into libvirt or wait.

#: (domain name, event: "defined", "undefined", "started", "stopped", ...)
DomainEventCallback = Callable[[str, str], None]
#: (why the connection closed: "eof", "keepalive", "error", "client")
ConnectionCallback = Callable[[str], None]

_LIFECYCLE_EVENTS = ("defined", "undefined", "started", "suspended", "resumed", "stopped",
                     "shutdown", "pmsuspended", "crashed")
_CLOSE_REASONS = {0: "error", 1: "eof", 2: "keepalive", 3: "client"}
_event_loop_lock = threading.Lock()
_event_loop: threading.Thread | None = None


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once per process.

    Must run before the connections that should deliver events are opened.
    """
    global _event_loop
    with _event_loop_lock:
        if _event_loop is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _event_loop = threading.Thread(target=_run_event_loop, name="libvirt-events",
                                       daemon=True)
        _event_loop.start()


def event_loop_alive() -> bool:
    return _event_loop is not None and _event_loop.is_alive()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError as exc:  # one bad iteration; the loop itself is fine
            log.debug("libvirt event loop: %s", exc)
            time.sleep(0.1)


class WatchedHypervisor(Hypervisor):
    """A Hypervisor whose every connection, the first and each reopened one, delivers
    domain lifecycle events and reports its own loss (close callback, keepalive).

    `on_open` runs after each successful (re)connection, under the connection lock: it
    must only record that it happened.
    """

    def __init__(self, uri: str | None, *, on_event: DomainEventCallback,
                 on_open: Callable[[], None], on_close: ConnectionCallback,
                 keepalive: tuple[int, int] = (5, 3), connections: int = 1):
        super().__init__(uri, keepalive=keepalive, connections=connections)
        self._on_event = on_event
        self._on_open = on_open
        self._on_close = on_close
        self._callback_ids: dict[int, int] = {}  # id(connection) → its event callback

    def _open_locked(self) -> None:
        start_event_loop()
        super()._open_locked()
        conn = self._conn
        try:
            self._callback_ids[id(conn)] = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None)
            conn.registerCloseCallback(self._closed, None)
        except libvirt.libvirtError as exc:
            self._conn = None
            self._lines.reset(None)
            self._forget(conn)
            error = classify(exc, f"cannot watch events on {self.uri}")
            raise ConnectionLost(str(error), code=error.code, domain=error.domain) from exc
        self._on_open()

    def _forget(self, conn: Any) -> None:
        """Deregister our callbacks from `conn` and close it; errors of a dead one are moot."""
        callback_id = self._callback_ids.pop(id(conn), None)
        for undo in (lambda: conn.domainEventDeregisterAny(callback_id),
                     conn.unregisterCloseCallback, conn.close):
            try:
                undo()
            except (libvirt.libvirtError, KeyError, TypeError):
                pass

    def _lifecycle(self, conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        kind = _LIFECYCLE_EVENTS[event] if 0 <= event < len(_LIFECYCLE_EVENTS) else str(event)
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        self._on_event(name, kind)

    def _closed(self, conn: Any, reason: int, _opaque: Any) -> None:
        if conn is self._conn:  # not one we closed on purpose
            self._on_close(_CLOSE_REASONS.get(reason, str(reason)))
