"""What goes into a seed: the checks of meta-data, user-data and network-config, and the files.

Pure: no libvirt, no files, no network. Called by the manifest loader (`check_user_data`,
`check_meta_data`, `check_network_config` for one-line errors and warnings), and by
controller.cloudinit.seed and .iso (`seed_files`, `content_sha256`) and the seed step
(`meta_data_for`).

`content_sha256` names a seed: a sha256 over a canonical form of the three files (names,
lengths, bytes), which is what a guest sees, whatever the ISO's layout.

User data may hold secrets: no message or warning here quotes it (warnings name a line and
column).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any, Final

import yaml

from .errors import InvalidSeedInput

__all__ = [
    "META_DATA", "NETWORK_CONFIG", "USER_DATA", "check_meta_data", "check_network_config",
    "check_user_data", "content_sha256", "meta_data_for", "seed_files",
]

USER_DATA: Final = "user-data"
META_DATA: Final = "meta-data"
NETWORK_CONFIG: Final = "network-config"

# cloud-init's own rule (cloudinit/handlers): the start of the user data,
# lowercased and without leading whitespace, names its format.
_CLOUD_CONFIG: Final = "#cloud-config"
_KNOWN_STARTS: Final = (
    "#cloud-config-archive",
    "#cloud-config-jsonp",
    "#cloud-config",
    "#cloud-boothook",
    "#include-once",
    "#include",
    "#part-handler",
    "#upstart-job",
    "## template: jinja",
    "#!",
)


# cloud-init reads user data with PyYAML's pure-Python safe loader; libyaml's
# takes the same documents but for rare edge cases, and was 3.5 times faster
# here (12 MiB of cloud-config: 12 s instead of 43 s on a busy 2-core machine).
_YAML_LOADER: Final[type[yaml.SafeLoader]] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CHECKED: dict[bytes, tuple[str, ...]] = {}  # sha256 of a #cloud-config -> its warnings
_CHECKED_MAX: Final = 256
_CHECKED_LOCK = threading.Lock()


def meta_data_for(*, name: str, uuid: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The meta-data of a VM: instance-id (its domain UUID) and local-hostname
    (its name), with the manifest's metaData merged over them."""
    merged: dict[str, Any] = {"instance-id": uuid, "local-hostname": name}
    merged.update(copy.deepcopy(dict(check_meta_data(overrides))))
    return merged


def check_meta_data(value: object) -> Mapping[str, Any]:
    """Return metaData if cloud-init can read it; raise InvalidSeedInput if not."""
    if not isinstance(value, Mapping):
        raise InvalidSeedInput(f"cloudInit.metaData must be a mapping, not {_kind(value)}")
    _check_keys(value, where="cloudInit.metaData")
    return value


def check_network_config(value: object) -> Mapping[str, Any]:
    """Return networkConfig if its version is 1 or 2; raise InvalidSeedInput if not.

    The form with a top-level `network:` key, which cloud-init also reads, is
    checked inside that key.
    """
    if not isinstance(value, Mapping):
        raise InvalidSeedInput(f"cloudInit.networkConfig must be a mapping, not {_kind(value)}")
    where = "cloudInit.networkConfig"
    inner: Mapping[Any, Any] = value
    if set(value) == {"network"}:
        where, wrapped = f"{where}.network", value["network"]
        if not isinstance(wrapped, Mapping):
            raise InvalidSeedInput(f"{where} must be a mapping, not {_kind(wrapped)}")
        inner = wrapped
    version = inner.get("version")
    if isinstance(version, bool) or version not in (1, 2):
        shown = "missing" if version is None else f"{version!r}"
        raise InvalidSeedInput(f"{where}.version must be 1 or 2, not {shown}")
    _check_keys(value, where="cloudInit.networkConfig")
    return value


def check_user_data(text: str) -> list[str]:
    """Warnings about user data that cloud-init would ignore; never its content.

    User data that begins with #cloud-config but is not valid YAML, or is not
    a mapping, is ignored by cloud-init; so is text in no format cloud-init
    knows. These are warnings: the seed is still built, as cloud-init's rule is.
    """
    start = text[:4096].lower()
    head = start.lstrip()
    if not head:
        return []
    kind = next((prefix for prefix in _KNOWN_STARTS if head.startswith(prefix)), None)
    if kind is None:
        if "mime-version:" in start:
            return []
        return [(
            "cloudInit.userData is in no format cloud-init knows (it does not begin with "
            "#cloud-config, #! or another cloud-init header, and is not MIME multipart); "
            "cloud-init will ignore it"
        )]
    if kind != _CLOUD_CONFIG:
        return []
    return list(_check_cloud_config(text))


def _check_cloud_config(text: str) -> tuple[str, ...]:
    """The YAML check of #cloud-config, remembered by the text's sha256: parsing
    megabytes of YAML takes seconds, and every pass checks the same text again."""
    import hashlib  # here: OpenSSL's ~5 ms import, for VMs with cloudInit only

    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    with _CHECKED_LOCK:
        known = _CHECKED.get(key)
    if known is not None:
        return known
    found = tuple(_parse_cloud_config(text))
    with _CHECKED_LOCK:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def _parse_cloud_config(text: str) -> list[str]:
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        return [(
            "cloudInit.userData begins with #cloud-config but is not valid YAML"
            f"{_yaml_where(exc)}; cloud-init will ignore it"
        )]
    if document is not None and not isinstance(document, dict):
        return [(
            f"cloudInit.userData begins with #cloud-config but is {_kind(document)}, "
            "not a mapping; cloud-init will ignore it"
        )]
    return []


def seed_files(
    *,
    user_data: str,
    meta_data: Mapping[str, Any],
    network_config: Mapping[str, Any] | None,
) -> dict[str, bytes]:
    """The files of a seed, by name, as they are written into the ISO."""
    if not isinstance(user_data, str):
        raise InvalidSeedInput(f"cloudInit.userData must be a string, not {_kind(user_data)}")
    try:
        user_bytes = user_data.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSeedInput("cloudInit.userData cannot be written as UTF-8") from None
    files = {
        USER_DATA: user_bytes,
        META_DATA: _stable_yaml(check_meta_data(meta_data), where="cloudInit.metaData"),
    }
    if network_config is not None:
        files[NETWORK_CONFIG] = _stable_yaml(
            check_network_config(network_config), where="cloudInit.networkConfig"
        )
    return files


def content_sha256(files: Mapping[str, bytes]) -> str:
    """sha256 of a canonical form of a seed's files: each name, length and bytes."""
    import hashlib

    digest = hashlib.sha256(b"reconcile-nocloud-seed/1\n")
    for name in sorted(files):
        content = files[name]
        digest.update(f"{name}\n{len(content)}\n".encode())
        digest.update(content)
    return digest.hexdigest()


# --- helpers ------------------------------------------------------------------


def _stable_yaml(value: Mapping[str, Any], *, where: str) -> bytes:
    try:
        text = yaml.safe_dump(
            _plain(value), sort_keys=True, default_flow_style=False, allow_unicode=True
        )
    except yaml.YAMLError:
        raise InvalidSeedInput(f"{where} holds a value that cannot be written as YAML") from None
    return text.encode("utf-8")


def _plain(value: object) -> object:
    """Mappings as dicts, so that safe_dump takes any Mapping."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _check_keys(value: object, *, where: str) -> None:
    """Every mapping key must be a string: YAML keys of cloud-init's files are,
    and sorted output needs keys of one type."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidSeedInput(f"{where} has a key that is not a string: {key!r}")
            _check_keys(item, where=f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, where=f"{where}[{index}]")


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f" (line {mark.line + 1}, column {mark.column + 1})"


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    return f"a {type(value).__name__}"
