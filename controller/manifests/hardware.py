"""Section 8 of a VirtualMachine document (firmware, CPU, boot and consoles) to spec
fields, with the checks a schema cannot make. Pure apart from resolving kernel paths.

Called by `specs._to_spec`. A field the document leaves out stays None (keep what the
domain has; a new domain gets the default), so only what it says is checked:

- `secureBoot: true` needs `firmware: efi` and, when `machine` is given, a q35 one;
- a CPU `model` goes with mode `custom` (the mode a model alone means), and `custom`
  needs one; the topology (sockets, cores, threads; a part left out is 1) must
  multiply to `vcpus`;
- `kernel` paths must resolve (symlinks followed) inside a disk root or
  /var/lib/libvirt/boot; `kernel: null` removes a direct kernel boot;
- `graphicsListen` needs `graphics: vnc` or `spice` and is an IP address.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Sequence
from typing import Any

from ..model import CPU, NO_KERNEL, Kernel
from .result import printable

#: Where kernels and initrds may live besides the disk roots.
BOOT_ROOT = "/var/lib/libvirt/boot"


class FieldError(Exception):
    """One field of one document is wrong: its path and the reason, for an `Invalid`."""

    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason


def section8(spec: dict[str, Any], roots: Sequence[str]) -> dict[str, Any]:
    """The VMSpec keyword arguments of section 8 from a document's `spec` (validated by
    the schema); `roots`: the resolved disk roots."""
    fields: dict[str, Any] = {
        "firmware": spec.get("firmware"),
        "secure_boot": spec.get("secureBoot"),
        "tpm": spec.get("tpm"),
        "cpu": _cpu(spec),
        "boot": tuple(spec["boot"]) if "boot" in spec else None,
        "kernel": _kernel(spec, roots),
        "graphics": spec.get("graphics"),
        "graphics_listen": _listen(spec),
        "serial": spec.get("serial"),
        "guest_agent": spec.get("guestAgent"),
    }
    if fields["secure_boot"]:
        if fields["firmware"] != "efi":
            raise FieldError("spec.secureBoot", "secureBoot needs firmware: efi")
        machine = spec.get("machine")
        if machine and "q35" not in machine:
            raise FieldError("spec.secureBoot", f"secureBoot needs a q35 machine, not {machine}")
    return fields


def _cpu(spec: dict[str, Any]) -> CPU | None:
    if "cpu" not in spec:
        return None
    item = spec["cpu"]
    mode, model = item.get("mode"), item.get("model")
    if model and mode not in (None, "custom"):
        raise FieldError("spec.cpu.model", f"a CPU model goes with mode: custom, not {mode}")
    if mode == "custom" and not model:
        raise FieldError("spec.cpu.model", "mode: custom needs a model")
    sockets = cores = threads = None
    if {"sockets", "cores", "threads"} & item.keys():
        sockets, cores, threads = (item.get(key, 1) for key in ("sockets", "cores", "threads"))
        vcpus = spec.get("vcpus")
        if vcpus is not None and sockets * cores * threads != vcpus:
            raise FieldError("spec.cpu", f"sockets {sockets} × cores {cores} × threads "
                                         f"{threads} = {sockets * cores * threads}, but "
                                         f"vcpus is {vcpus}")
    return CPU(mode=mode or ("custom" if model else None), model=model, sockets=sockets,
               cores=cores, threads=threads)


def _kernel(spec: dict[str, Any], roots: Sequence[str]) -> Kernel | None:
    if "kernel" not in spec:
        return None
    item = spec["kernel"]
    if item is None:
        return NO_KERNEL
    allowed = [*roots, os.path.realpath(BOOT_ROOT)]
    initrd = item.get("initrd")
    return Kernel(path=confined_boot_file(item["path"], allowed, "spec.kernel.path"),
                  initrd=(confined_boot_file(initrd, allowed, "spec.kernel.initrd")
                          if initrd else None),
                  cmdline=item.get("cmdline") or None)


def confined_boot_file(path: str, roots: Sequence[str], field: str) -> str:
    """`path` resolved, when it is inside one of `roots` (and is a file, if it exists)."""
    resolved = os.path.realpath(path)
    if not any(resolved.startswith(root.rstrip("/") + "/") for root in roots):
        shown = path if resolved == path else f"{path} (resolves to {printable(resolved)})"
        raise FieldError(field, f"{shown} is outside the allowed roots ({', '.join(roots)}); "
                                "see --disk-root")
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        return resolved  # libvirt says so when the domain starts
    except OSError as exc:
        raise FieldError(field, f"{path} is not usable: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise FieldError(field, f"{path} is not a regular file")
    return resolved


def _listen(spec: dict[str, Any]) -> str | None:
    address = spec.get("graphicsListen")
    if address is None:
        return None
    if spec.get("graphics") not in ("vnc", "spice"):
        raise FieldError("spec.graphicsListen", "graphicsListen needs graphics: vnc or spice")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise FieldError("spec.graphicsListen", f"{printable(address)} is not an IP "
                                                "address") from None
    return str(address)
