"""`build_seed`: a VM's cloudInit values as a NoCloud seed ISO, with its two hashes.

Pure. Called by the code that plans and uploads seed volumes, which uploads `Seed.data`
as a volume through libvirt (no ISO tool is needed on any host).

Each seed carries two hashes:

- ``content_sha256`` names the seed: a sha256 over a canonical form of the three files
  (see controller.cloudinit.content). It does not depend on how the ISO is laid out, so a
  pycdlib upgrade, or two controllers with different pycdlib versions, never shows a seed
  change that is not one (no spurious next-boot change, no two controllers replacing each
  other's seed). ``short_id`` (its first 12 hex) is meant for volume names; the full hash
  is what a plan shows instead of the user data.
- ``sha256`` is the hash of the ISO bytes themselves: what to compare a volume with right
  after uploading it. To check an existing volume whatever built it, read it back with
  ``seed_content_sha256`` and compare with ``content_sha256``.

User data may hold secrets: ``Seed`` leaves ``data`` out of its repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .content import check_user_data, content_sha256, seed_files
from .errors import SeedTooLarge
from .iso import iso_bytes

__all__ = ["MAX_SEED_BYTES", "SHORT_ID_LENGTH", "Seed", "build_seed"]

# A seed carries configuration, not payloads: 16 MiB is 1000 times a typical
# cloud-config, and a 16 MiB seed builds in about 0.2 s (checking that much
# cloud-config YAML takes seconds, once per content: see controller.cloudinit.content).
# Compared with the three files' sizes added up, before anything is built.
MAX_SEED_BYTES: Final = 16 * 1024 * 1024

SHORT_ID_LENGTH: Final = 12


@dataclass(frozen=True)
class Seed:
    """A built NoCloud seed: the ISO bytes, its two hashes, and the warnings."""

    data: bytes = field(repr=False)  # holds the user data: never in a repr
    sha256: str  # of `data`, the ISO bytes
    content_sha256: str  # of the files' canonical form: names the seed
    warnings: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The first 12 hex of content_sha256, for volume names."""
        return self.content_sha256[:SHORT_ID_LENGTH]


def build_seed(
    *,
    user_data: str,
    meta_data: Mapping[str, Any],
    network_config: Mapping[str, Any] | None,
) -> Seed:
    """Build the NoCloud seed ISO for these values.

    Raise InvalidSeedInput for metaData or networkConfig that cloud-init cannot
    read, and SeedTooLarge past MAX_SEED_BYTES; warnings about the user data
    (see check_user_data) are in the result.
    """
    files = seed_files(user_data=user_data, meta_data=meta_data, network_config=network_config)
    size = sum(len(content) for content in files.values())
    if size > MAX_SEED_BYTES:
        raise SeedTooLarge(size=size, limit=MAX_SEED_BYTES)
    data = iso_bytes(files)
    import hashlib  # here: a pass without seeds to build never needs it

    return Seed(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_sha256=content_sha256(files),
        warnings=tuple(check_user_data(user_data)),
    )
