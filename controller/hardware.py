"""Value types of section 8 (firmware, CPU, boot and consoles) that a VM spec and an
observed domain share: a CPU and a direct kernel boot. Frozen, no I/O; re-exported by
`controller.model`, which every layer imports them from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CPU:
    """A CPU mode, model and topology. In a manifest, None leaves that part as the domain
    has it; read from a domain, None says the XML has none (or, for the topology, one a
    manifest cannot describe: dies or clusters other than 1)."""

    mode: str | None = None  # host-passthrough | host-model | custom (| maximum, read only)
    model: str | None = None  # with custom
    sockets: int | None = None  # sockets, cores and threads: all set, or all None
    cores: int | None = None
    threads: int | None = None

    @property
    def topology(self) -> tuple[int, int, int] | None:
        if self.sockets is None or self.cores is None or self.threads is None:
            return None
        return (self.sockets, self.cores, self.threads)


@dataclass(frozen=True)
class Kernel:
    """Direct kernel boot; `path` "" is none (NO_KERNEL: boot from the disks)."""

    path: str = ""
    initrd: str | None = None
    cmdline: str | None = None


NO_KERNEL = Kernel()
