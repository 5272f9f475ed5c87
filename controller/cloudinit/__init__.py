"""NoCloud seeds for cloud-init: the pure part of CONTRACT section 7.

A seed is an ISO 9660 volume labelled ``cidata`` that holds ``user-data``, ``meta-data``
and, when given, ``network-config``. This package turns a VM's ``cloudInit`` values into
those bytes; it does no I/O (no libvirt, no files, no network). The storage code uploads
the bytes as a volume through libvirt, so no ISO tool is needed on any host.

Who calls it: the manifest loader (``check_user_data``, ``check_meta_data``,
``check_network_config`` for one-line errors and warnings), and the code that plans and
uploads seed volumes (``meta_data_for``, ``build_seed``, ``seed_content_sha256``). They
import from ``controller.cloudinit``, never from its modules:

    seed.py     build_seed() and Seed: the ISO bytes, their sha256 and the content_sha256
    content.py  the checks of the three files, the files themselves, content_sha256()
    iso.py      the deterministic ISO writer (dates pinned to SEED_EPOCH) and its reader
    errors.py   SeedError, InvalidSeedInput, SeedTooLarge

Seeds are deterministic: the same inputs give the same bytes on every run and machine.
User data may hold secrets: nothing here logs it, no message or warning quotes it, and
``Seed`` leaves ``data`` out of its repr.
"""

from .content import (
    META_DATA,
    NETWORK_CONFIG,
    USER_DATA,
    check_meta_data,
    check_network_config,
    check_user_data,
    content_sha256,
    meta_data_for,
    seed_files,
)
from .errors import InvalidSeedInput, SeedError, SeedTooLarge
from .iso import SEED_EPOCH, VOLUME_LABEL, read_seed, seed_content_sha256
from .seed import MAX_SEED_BYTES, SHORT_ID_LENGTH, Seed, build_seed

__all__ = [
    "MAX_SEED_BYTES", "META_DATA", "NETWORK_CONFIG", "SEED_EPOCH", "SHORT_ID_LENGTH",
    "USER_DATA", "VOLUME_LABEL", "InvalidSeedInput", "Seed", "SeedError", "SeedTooLarge",
    "build_seed", "check_meta_data", "check_network_config", "check_user_data",
    "content_sha256", "meta_data_for", "read_seed", "seed_content_sha256", "seed_files",
]
