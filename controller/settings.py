"""`Settings`: what a run was asked to do, typed, built once by the CLI from its arguments
and handed to the commands and the service (which never see argparse).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import UsageError
from .manifests import DEFAULT_DISK_ROOTS

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Settings:
    """What a run was asked to do (see the module's docstring)."""

    manifests: str
    connect: str | None = None
    disk_roots: tuple[str, ...] = DEFAULT_DISK_ROOTS
    output: str = "text"
    strict_permissions: bool = False
    extra_hosts: Mapping[str, str] = field(default_factory=dict)  # --host NAME=URI
    only_host: str | None = None  # --host NAME
    verbose: int = 0
    dry_run: bool = False
    prune: bool = False
    max_prune: int = 5
    workers: int = 8
    lock_timeout: float = 300.0
    lock_dir: str | None = None
    step_log: str | None = None
    state_dir: str | None = None
    connect_timeout: float = 10.0
    resync: float = 60.0
    metrics_address: str | None = None
    download_timeout: float = 60.0
    wait: bool = False  # --once --wait: until every running VM is ready
    wait_timeout: float = 300.0
    no_proof: bool = False  # --once --no-proof: record and replay no no-op proof (proof.py)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """From any of the CLI's parsers: options a command does not have keep defaults."""
        extra, only = host_options(getattr(args, "hosts", None) or [])
        given = {name: getattr(args, name) for name in (
            "connect", "output", "strict_permissions", "verbose", "dry_run", "prune",
            "max_prune", "workers", "lock_timeout", "lock_dir", "step_log", "state_dir",
            "connect_timeout", "resync", "metrics_address", "download_timeout", "wait",
            "wait_timeout", "no_proof")
            if hasattr(args, name)}
        roots = getattr(args, "disk_roots", None)
        return cls(manifests=getattr(args, "manifests", ""), extra_hosts=extra, only_host=only,
                   disk_roots=tuple(roots) if roots else DEFAULT_DISK_ROOTS, **given)


def host_options(entries: Sequence[str]) -> tuple[dict[str, str], str | None]:
    """--host values: the NAME=URI entries, and the one NAME to restrict a run to."""
    extra: dict[str, str] = {}
    only: list[str] = []
    for entry in entries:
        name, equals, uri = entry.partition("=")
        if not HOST_NAME.fullmatch(name):
            raise UsageError(f"--host {entry}: a host name is letters, digits, '_', '.', '-'")
        if equals and not uri:
            raise UsageError(f"--host {entry}: the URI is missing")
        if equals:
            extra[name] = uri
        else:
            only.append(name)
    if len(set(only)) > 1:
        raise UsageError(f"--host NAME restricts a run to one host, not {', '.join(only)}")
    return extra, only[0] if only else None
