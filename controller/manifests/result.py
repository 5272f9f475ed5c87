"""What loading the manifest directory gives: the valid specs, and what is invalid.

Every problem is an `Invalid` entry (file, document index, field path, reason),
never an exception, so one bad file cannot stop the others from being reconciled.
A name seen in an invalid document is kept in `invalid_names` (and the file that
names it in `invalid_sources`): its domain must be left exactly as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import ImageSpec, VMSpec
from ..resourcemodel import NetworkSpec, PoolSpec


@dataclass(frozen=True)
class Invalid:
    """One problem of the manifests: the file, the document in it, the key path, why."""

    file: str
    document: int | None
    path: str
    error: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "document": self.document, "path": self.path,
                "error": self.error}

    def __str__(self) -> str:
        file = printable(self.file)
        where = file if self.document is None else f"{file}[{self.document}]"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.error}"


def printable(text: str) -> str:
    """`text` with unprintable characters escaped: a file name or key cannot forge a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


@dataclass
class LoadResult:
    """What loading a manifest directory found: valid specs by kind, and what is invalid."""

    directory: str
    specs: dict[str, VMSpec] = field(default_factory=dict)
    invalid: list[Invalid] = field(default_factory=list)
    invalid_names: set[str] = field(default_factory=set)
    invalid_sources: dict[str, str] = field(default_factory=dict)  # name → invalid file
    images: dict[str, ImageSpec] = field(default_factory=dict)
    invalid_images: set[str] = field(default_factory=set)
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    invalid_networks: set[str] = field(default_factory=set)
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    invalid_pools: set[str] = field(default_factory=set)
    problem: str | None = None  # the directory itself is missing, unreadable, or empty
    documents: int = 0  # VirtualMachine documents, valid or not
    warnings: list[str] = field(default_factory=list)  # e.g. files others may write
    hosts: dict[str, str] = field(default_factory=dict)  # hosts.yaml and --host NAME=URI
    hosts_documents: int = 0  # Hosts documents seen in hosts.yaml, valid or not
    disk_sources: set[str] = field(default_factory=set)  # disk paths resolved (no-op proof)

    @property
    def prune_safe(self) -> bool:
        """Whether this load is complete enough to call a managed domain an orphan."""
        return self.problem is None and not self.invalid and self.documents > 0

    def refuse_name(self, name: str, file: str) -> None:
        """`name` appears in an invalid document of `file`: leave its domain alone."""
        self.invalid_names.add(name)
        self.invalid_sources.setdefault(name, file)

    def refuse(self, kind: str, name: str, file: str) -> None:
        """A document of `kind` named `name` in `file` is invalid."""
        if kind == "Image":
            self.invalid_images.add(name)
        elif kind == "Network":
            self.invalid_networks.add(name)
        elif kind == "StoragePool":
            self.invalid_pools.add(name)
        elif kind != "Hosts":
            self.refuse_name(name, file)
