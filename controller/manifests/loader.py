"""`load_directory`: read, validate and cross-check every manifest under a directory.

Called by the CLI (validate, --once, status) and the service (through watch.py's
ManifestSet). Pure apart from reading files.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .cloudinit import referenced_files
from .files import Memo, documents, manifest_files, stat_of, unsafe_permissions
from .images import read_images
from .resources import read_networks, read_pools
from .result import Invalid, LoadResult
from .specs import HOSTS_FILE, cross_check
from .validation import check_document as validate_document

DEFAULT_DISK_ROOTS = ("/var/lib/libvirt/images",)

Candidates = list[tuple[str, int, dict[str, Any]]]


def _read_kinds(found: dict[str, Candidates], result: LoadResult,
                disk_roots: Sequence[str]) -> None:
    """The kinds besides VirtualMachine and Hosts, each read into its specs (names unique
    within the kind, its own cross-checks), before the VMs that may name them."""
    read_pools(found["StoragePool"], result, disk_roots)
    read_images(found["Image"], result)
    read_networks(found["Network"], result)


#: The kinds `_read_kinds` reads (schemas: validation.SCHEMA_FILES).
RESOURCE_KINDS = ("StoragePool", "Image", "Network")


def load_directory(directory: str, *, disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS,
                   strict_permissions: bool = False,
                   extra_hosts: Mapping[str, str] | None = None) -> LoadResult:
    """Load, validate and cross-check every manifest under `directory`.

    A file or folder that a user other than root and this process's may write is
    warned about, like sshd's StrictModes; with `strict_permissions` its
    manifests are refused as invalid. `extra_hosts` (from --host NAME=URI) add to
    or override the hosts of hosts.yaml.
    """
    result = LoadResult(directory=directory)
    root = Path(directory)
    if not root.exists():
        result.problem = f"manifest directory {directory} does not exist"
        return result
    if not root.is_dir():
        result.problem = f"manifest path {directory} is not a directory"
        return result
    if not os.access(root, os.R_OK | os.X_OK):
        result.problem = f"manifest directory {directory} is not readable"
        return result

    candidates: Candidates = []
    memos: dict[tuple[str, int], Memo] = {}  # of the VM documents whose text is cached
    resources: dict[str, Candidates] = {kind: [] for kind in RESOURCE_KINDS}
    read: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}  # file → counts around it
    walk_errors: list[OSError] = []
    checked_folders: dict[str, str | None] = {}
    for folder, path, relative in manifest_files(root, walk_errors):
        if not relative.isprintable() and any("\udc80" <= ch <= "\udcff" for ch in relative):
            # undecodable bytes: shown as \xNN, so reports stay valid UTF-8
            shown = relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            result.invalid.append(Invalid(shown, None, "", "the file name is not valid UTF-8"))
            continue
        if folder not in checked_folders:
            checked_folders[folder] = unsafe_permissions(folder)
        info = stat_of(path)
        unsafe = checked_folders[folder] or unsafe_permissions(path, info)
        if unsafe:
            if strict_permissions:
                result.invalid.append(Invalid(relative, None, "",
                                              f"refused: {unsafe} (--strict-permissions)"))
                continue
            result.warnings.append(f"{relative}: {unsafe}; --strict-permissions refuses it")
        before = (len(result.invalid), result.documents)
        for index, document, plain, memo in documents(path, relative, result, info):
            kind = document.get("kind") if isinstance(document, dict) else None
            if kind == "Hosts":
                _read_hosts(document, relative, index, result)
                continue
            result.documents += 1
            if isinstance(kind, str) and kind in resources:
                if validate_document(document, relative, index, result, kind=kind):
                    resources[kind].append((relative, index, document))
                continue
            if memo is None or memo.checked is not document:
                if not validate_document(document, relative, index, result, floats=not plain):
                    continue
                if memo is not None:
                    memo.checked = document
            if memo is not None:
                memos[relative, index] = memo
            candidates.append((relative, index, document))
        read[relative] = (before, (len(result.invalid), result.documents))
    candidates = _without_user_data_files(directory, candidates, read, result, resources)
    for error in walk_errors:
        where = os.path.relpath(error.filename, root) if error.filename else directory
        result.invalid.append(Invalid(where, None, "", f"cannot read: {error.strerror}"))
    if result.documents == 0 and not result.invalid:
        result.problem = f"manifest directory {directory} holds no manifests"

    result.hosts.update(extra_hosts or {})
    _read_kinds(resources, result, disk_roots)
    cross_check(candidates, result, disk_roots, memos)
    return result


def _read_hosts(document: dict[str, Any], relative: str, index: int,
                result: LoadResult) -> None:
    """The hosts.yaml document: checked, then its names and URIs kept in `result.hosts`."""
    if relative != HOSTS_FILE:
        result.invalid.append(Invalid(relative, index, "kind", "a Hosts document belongs in "
                                      f"{HOSTS_FILE} at the root of the manifest tree"))
        return
    result.hosts_documents += 1
    if result.hosts_documents > 1:
        result.invalid.append(Invalid(relative, index, "kind",
                                      f"{HOSTS_FILE} holds more than one Hosts document"))
        return
    if validate_document(document, relative, index, result, kind="Hosts"):
        result.hosts.update(document["hosts"])


def check_document(document: dict[str, Any], *,
                   disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS) -> list[Invalid]:
    """Why one VirtualMachine document on its own is invalid (schema and field checks,
    with `disk_roots`), as `validate` says it; [] when it is valid. Used by `export`, so
    that it never writes a manifest that `validate` rejects."""
    result = LoadResult(directory="")
    document = copy.deepcopy(document)  # the fast validator fills in defaults in place
    if validate_document(document, "-", 0, result):
        cross_check([("-", 0, document)], result, disk_roots)
    return result.invalid


def check_resource(document: dict[str, Any], *,
                   disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS) -> list[Invalid]:
    """Why one Network or StoragePool document on its own is invalid, as `validate` says
    it; [] when it is valid. Used by `export`."""
    result = LoadResult(directory="")
    kind = str(document.get("kind"))
    if kind not in RESOURCE_KINDS:
        return [Invalid("-", 0, "kind", f"not a resource kind: {kind!r}")]
    document = copy.deepcopy(document)
    if validate_document(document, "-", 0, result, kind=kind):
        found: dict[str, Candidates] = {name: [] for name in RESOURCE_KINDS}
        found[kind].append(("-", 0, document))
        _read_kinds(found, result, disk_roots)
    return result.invalid


def _without_user_data_files(directory: str, candidates: list[tuple[str, int, dict[str, Any]]],
                             read: dict[str, tuple[tuple[int, int], tuple[int, int]]],
                             result: LoadResult, resources: dict[str, Candidates],
                             ) -> list[tuple[str, int, dict[str, Any]]]:
    """Forget what was read from the files VM documents name as userDataFile: user data
    is never a manifest, whatever the file's name ends with (nor a document of another
    kind: `resources` loses them too)."""
    referenced = referenced_files(directory, candidates) & set(read)
    if not referenced:
        return candidates
    for kind, found in resources.items():
        resources[kind] = [candidate for candidate in found if candidate[0] not in referenced]
    for relative in referenced:
        (_, documents_before), (_, documents_after) = read[relative]
        result.documents -= documents_after - documents_before
    result.invalid = [entry for entry in result.invalid if entry.file not in referenced]
    for name, file in list(result.invalid_sources.items()):
        if file in referenced:
            del result.invalid_sources[name]
            result.invalid_names.discard(name)
    return [candidate for candidate in candidates if candidate[0] not in referenced]
