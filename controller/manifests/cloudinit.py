"""A VM document's `cloudInit` to a CloudInit spec: `userDataFile` read (relative to the
manifest's folder, confined to the manifest directory, symlinks followed), metaData
and networkConfig checked as cloud-init reads them, the seed's size bounded.

Called by specs.py for each VM document, and by the loader, which must not read a file
that a manifest names as `userDataFile` as a manifest itself, whatever its ending.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..model import CloudInit

_MAX_USER_DATA_FILE = 16 * 1024 * 1024


class CloudInitError(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason


def user_data_file(root: str, relative: str, name: str) -> str:
    """The manifest-relative path of `relative`'s userDataFile `name`; CloudInitError when
    it leaves the manifest directory."""
    base = os.path.realpath(root)
    resolved = os.path.realpath(os.path.join(base, os.path.dirname(relative), name))
    if resolved != base and not resolved.startswith(base.rstrip("/") + "/"):
        raise CloudInitError("spec.cloudInit.userDataFile",
                             f"{name} resolves outside the manifest directory ({resolved})")
    return os.path.relpath(resolved, base)


def referenced_files(root: str, candidates: Iterable[tuple[str, int, dict[str, Any]]]) -> (
        set[str]):
    """The files (relative to `root`) that VM documents name as userDataFile."""
    found = set()
    for relative, _, document in candidates:
        cloud = (document.get("spec") or {}).get("cloudInit") or {}
        name = cloud.get("userDataFile")
        if isinstance(name, str):
            try:
                found.add(user_data_file(root, relative, name))
            except CloudInitError:
                pass  # reported when the document is checked
    return found


def to_cloud_init(value: dict[str, Any] | None, *, root: str, relative: str,
                  warnings: list[str]) -> CloudInit | None:
    """The CloudInit of one document; CloudInitError (field path, reason) when invalid."""
    if value is None:
        return None
    from ..cloudinit import (  # the seed's code: only for VMs that have one
        MAX_SEED_BYTES,
        SeedError,
        check_meta_data,
        check_network_config,
        check_user_data,
        seed_files,
    )

    path = "spec.cloudInit"
    user_data = value.get("userData")
    if "userDataFile" in value:
        user_data = _read(root, relative, value["userDataFile"])
    try:
        meta = check_meta_data(value.get("metaData", {}))
        network = value.get("networkConfig")
        if network is not None:
            check_network_config(network)
        files = seed_files(user_data=user_data or "", meta_data=meta, network_config=network)
    except SeedError as error:
        field = ("networkConfig" if "networkConfig" in str(error)
                 else "metaData" if "metaData" in str(error) else "userData")
        raise CloudInitError(f"{path}.{field}", str(error)) from None
    size = sum(len(content) for content in files.values())
    if size > MAX_SEED_BYTES:
        raise CloudInitError(path, f"the seed would hold {size} bytes; at most "
                                   f"{MAX_SEED_BYTES} allowed")
    for warning in check_user_data(user_data or ""):
        warnings.append(f"{relative}: {warning}")
    return CloudInit(user_data=user_data or "", meta_data=json.dumps(meta, sort_keys=True),
                     network_config=json.dumps(network, sort_keys=True) if network else None,
                     pool=value.get("pool", "default"))


def _read(root: str, relative: str, name: str) -> str:
    field = "spec.cloudInit.userDataFile"
    inside = user_data_file(root, relative, name)
    path = Path(root) / inside
    try:
        info = path.stat()
        if not path.is_file():
            raise CloudInitError(field, f"{name} is not a regular file")
        if info.st_size > _MAX_USER_DATA_FILE:
            raise CloudInitError(field, f"{name} is larger than {_MAX_USER_DATA_FILE} bytes")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CloudInitError(field, f"{name} does not exist (looked for {inside})") from None
    except UnicodeDecodeError:
        raise CloudInitError(field, f"{name} is not UTF-8 text") from None
    except OSError as error:
        raise CloudInitError(field, f"{name} cannot be read: {error.strerror}") from None
