"""Writing manifests the way the tests' users do: a manifest directory that takes
documents or raw YAML, a tiny running VM's manifest as text, and an editor's atomic save
(a hidden temporary file, then a rename).

Called by tests/e2e, tests/service and tests/reliability (the `manifests` and `vm`
fixtures of tests/support/system.py build on it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support.libvirtd import VIRT_TYPE

Document = dict[str, Any]
#: vm("a", memory="96MiB", uuid=...) → the manifest document of domain prefix+"a".
VMBuilder = Callable[..., Document]


class Manifests:
    """A manifest directory; `write` takes documents (dicts) or raw YAML text."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, filename: str, *documents: Document | str) -> Path:
        parts = [doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
                 for doc in documents]
        target = self.path / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("---\n".join(parts))
        return target

    def remove(self, filename: str) -> None:
        (self.path / filename).unlink()


def vm_manifest(name: str, *, memory: str = "64MiB", state: str = "running",
                stop_timeout: int = 0, extra: str = "") -> str:
    """The YAML of a tiny VM `name` (1 vCPU, this machine's guest type)."""
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: {name}\n"
            f"spec:\n  state: {state}\n  memory: {memory}\n  vcpus: 1\n  type: {VIRT_TYPE}\n"
            f"  stopTimeout: {stop_timeout}\n{extra}")


def write_atomically(path: Path, text: str) -> None:
    """As careful editors and config tools do: a hidden temporary file, then a rename."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(3)}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
