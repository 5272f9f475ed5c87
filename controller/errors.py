"""The exceptions of reconcile, and what each tells the caller to do.

    ReconcileError
     ├── UsageError           bad command line or manifest directory (exit 2)
     ├── LockTimeout          another run held a VM's lock too long
     └── HypervisorError      a libvirt call failed; classified once, at the edge
          ├── DomainNotFound  the domain does not exist (any call may say so)
          ├── AlreadyExists   define/create raced with another definition: observe again
          ├── TransientError  retry the same call after a backoff
          ├── ConnectionLost  reconnect, then retry
          └── PermanentError  give up on this VM and report it

`hypervisor.py` is the only module that turns libvirt's errors into these.
"""

from __future__ import annotations


class ReconcileError(Exception):
    """Base of every error reconcile raises on purpose."""


class UsageError(ReconcileError):
    """The command line or the manifest directory cannot be used."""


class LockTimeout(ReconcileError):
    """A VM's lock stayed held by another run for longer than --lock-timeout."""


class HypervisorError(ReconcileError):
    """A libvirt call failed. `code` and `domain` are libvirt's own numbers."""

    def __init__(self, message: str, *, code: int | None = None, domain: int | None = None):
        super().__init__(message)
        self.code = code
        self.domain = domain


class DomainNotFound(HypervisorError):
    """The domain does not exist (libvirt VIR_ERR_NO_DOMAIN)."""


class AlreadyExists(HypervisorError):
    """A domain with that name already exists with another UUID."""


class TransientError(HypervisorError):
    """Worth retrying after a delay: a busy domain, a timeout."""


class ConnectionLost(HypervisorError):
    """The connection to libvirt is gone; reconnect before retrying."""


class PermanentError(HypervisorError):
    """Retrying will not help; the VM is reported as failed."""
