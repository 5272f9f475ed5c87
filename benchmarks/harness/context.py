"""What a section is given: the host, a scratch folder, the guests' type, where results go.

`bench.py` builds one `Bench` per section (a fresh `profiles` dict each time, which the
section fills and `bench.py` stores with its results). The sections call `Bench.once`
for a `reconcile --once -o json` command line and `write_manifests` for the tiny guests'
manifests; `ms` formats a time for their progress lines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.host import Host
from harness.runs import RECONCILE, Json


@dataclass(frozen=True)
class Bench:
    uri: str
    host: Host
    tmp: Path
    virt_type: str
    default_workers: int
    out: Path
    profile: bool
    progress: Callable[[str], None] = print
    profiles: dict[str, Json] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.host.prefix

    def once(self, manifests: Path, locks: Path, *extra: str) -> list[str]:
        """`reconcile --once` over `manifests` on the host, its report as JSON."""
        return [str(RECONCILE), "--once", "-m", str(manifests), "-c", self.uri,
                "--lock-dir", str(locks), "-o", "json", *extra]


def manifest(name: str, *, state: str, memory_mib: int, virt_type: str) -> str:
    """One tiny guest: 1 vCPU, no disk, stopTimeout 0 (a guest without an OS ignores ACPI)."""
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  state: {state}\n  memory: {memory_mib}MiB\n  vcpus: 1\n"
            f"  type: {virt_type}\n  stopTimeout: 0\n")


def write_manifests(directory: Path, names: Sequence[str], *, state: str, memory_mib: int,
                    virt_type: str) -> None:
    """One manifest file per name in `directory` (created; existing files overwritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.yaml").write_text(
            manifest(name, state=state, memory_mib=memory_mib, virt_type=virt_type))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
