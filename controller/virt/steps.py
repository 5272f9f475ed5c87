"""The domain steps of a plan, by domain name; each tolerates being already done.

Used through `Hypervisor.steps` by the executor. Destroying a stopped domain,
undefining a missing one, starting a running one: all "already done".
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import libvirt

from ..errors import DomainNotFound, PermanentError
from .connection import Connection
from .errors import code, is_not_running

log = logging.getLogger(__name__)

_KEEP_FIRMWARE_STATE = (
    libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_KEEP_TPM", 0),
    libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM,
    0,
)


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


class DomainSteps:
    """What a plan does to the domains of one host."""

    def __init__(self, connection: Connection):
        self._c = connection

    def _domain(self, conn: Any, name: str) -> Any:
        self._c.calls += 1
        return conn.lookupByName(name)

    def define(self, xml: str) -> None:
        with self._c.call("cannot define domain") as conn:
            self._c.calls += 1
            conn.defineXML(xml)

    def start(self, name: str) -> None:
        try:
            with self._c.call(f"cannot start domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    self._c.calls += 1
                    dom.resume()
                else:
                    self._c.calls += 1
                    dom.create()
        except PermanentError as error:
            if not (error.code == code("VIR_ERR_OPERATION_INVALID")
                    and "already running" in str(error)):
                raise

    def destroy(self, name: str) -> None:
        try:
            with self._c.call(f"cannot destroy domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                dom.destroy()
        except DomainNotFound:
            pass  # a transient domain is gone once destroyed
        except PermanentError as error:
            if not is_not_running(error):
                raise

    def shutdown(self, name: str, timeout: float, poll: float = 0.25) -> bool:
        """Ask the guest to shut down; destroy it if it is still up after `timeout`.

        Returns True when the guest shut down by itself.
        """
        try:
            with self._c.call(f"cannot shut down domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                dom.shutdown()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self._c.call(f"cannot read domain '{name}'", on=dom.connect()):
                    self._c.calls += 1
                    if not dom.isActive():
                        return True
                time.sleep(poll)
        except DomainNotFound:
            return True
        except PermanentError as error:
            if is_not_running(error):
                return True
            raise
        log.info("%s did not shut down within %ss; destroying it", name, timeout)
        self.destroy(name)
        return False

    def undefine(self, name: str) -> None:
        """Undefine, keeping NVRAM and TPM state (and refusing if a managed save exists)."""
        unsupported = (code("VIR_ERR_INVALID_ARG"), code("VIR_ERR_NO_SUPPORT"))
        for index, flags in enumerate(_KEEP_FIRMWARE_STATE):
            try:
                with self._c.call(f"cannot undefine domain '{name}'") as conn:
                    dom = self._domain(conn, name)
                    self._c.calls += 1
                    dom.undefineFlags(flags)
            except DomainNotFound:
                return
            except PermanentError as error:
                if error.code == code("VIR_ERR_OPERATION_INVALID") and "transient" in str(error):
                    return  # only a persistent domain has a definition to remove
                if error.code in unsupported and index + 1 < len(_KEEP_FIRMWARE_STATE):
                    continue
                raise
            return

    def set_autostart(self, name: str, enabled: bool) -> None:
        with self._c.call(f"cannot set autostart of domain '{name}'") as conn:
            dom = self._domain(conn, name)
            self._c.calls += 1
            dom.setAutostart(1 if enabled else 0)

    def migrate(self, name: str, target: Connection, *, persist_xml: str,
                disks: Sequence[str] = ()) -> None:
        """Live-migrate running domain `name` to `target`: persistent there with
        `persist_xml` as its saved definition, undefined here. libvirt rolls a failed
        migration back; the guest keeps running here. `disks` (targets: vda, ...) are
        copied whole during the migration (VIR_MIGRATE_NON_SHARED_DISK), into volumes
        that must exist on `target` already; the other disks are shared storage."""
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
        params: dict[str, Any] = {libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: persist_xml}
        if disks:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(disks)
        address = migration_uri(target.uri)
        if address:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = address
        with self._c.call(f"cannot migrate domain '{name}' to {target.uri}") as conn:
            dom = self._domain(conn, name)
            self._c.calls += 1
            # The target's own calls inside migrate3 (prepare, finish) are short and take
            # no slot there, so two moves in opposite directions never wait on each other.
            dom.migrate3(target.conn, params, flags)

    def set_memory_live(self, name: str, kib: int) -> None:
        """Live balloon request; the guest may or may not follow it."""
        try:
            with self._c.call(f"cannot set memory of domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except PermanentError as error:
            if not is_not_running(error):
                raise

    def attach_device(self, name: str, device_xml: str) -> None:
        """Hot-plug `device_xml` into running domain `name` (VIR_DOMAIN_AFFECT_LIVE only:
        the define step saves the definition). Already there, or the domain not running
        (the define and the next boot bring it): done."""
        try:
            with self._c.call(f"cannot hot-plug a device into domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                if live_device(dom.XMLDesc(0), device_xml) is not None:
                    return
                self._c.calls += 1
                dom.attachDeviceFlags(device_xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except PermanentError as error:
            if not is_not_running(error):
                raise

    def detach_device(self, name: str, device_xml: str) -> None:
        """Unplug the running domain's device that `device_xml` names (by element and
        target: libvirt wants the live element, with the source path it chose). Not
        there, or the domain not running: done."""
        try:
            with self._c.call(f"cannot unplug a device from domain '{name}'") as conn:
                dom = self._domain(conn, name)
                self._c.calls += 1
                found = live_device(dom.XMLDesc(0), device_xml)
                if found is None:
                    return
                self._c.calls += 1
                dom.detachDeviceFlags(found, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except PermanentError as error:
            if not is_not_running(error):
                raise


def live_device(domain_xml: str, device_xml: str) -> str | None:
    """The device element of `domain_xml` that `device_xml` names: the same element name
    and every attribute of its `<target>`; None when there is none."""
    wanted = ET.fromstring(device_xml)
    wanted_target = wanted.find("target")
    want = dict(wanted_target.attrib) if wanted_target is not None else {}
    devices = ET.fromstring(domain_xml).find("devices")
    for element in devices if devices is not None else ():
        if element.tag != wanted.tag:
            continue
        target = element.find("target")
        have = dict(target.attrib) if target is not None else {}
        if all(have.get(key) == value for key, value in want.items()):
            return ET.tostring(element, encoding="unicode")
    return None
