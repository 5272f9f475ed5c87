"""The errors of a seed: what cannot be built from a VM's cloudInit values.

Raised by controller.cloudinit's checks and builder; the manifest loader turns them into
one-line errors naming the manifest, and the seed step into a failed step.

    ReconcileError            (controller.errors)
     └── SeedError            a seed cannot be built from these values
          ├── InvalidSeedInput  metaData not a mapping, bad networkConfig version, ...
          └── SeedTooLarge      the files add up to more than MAX_SEED_BYTES
"""

from __future__ import annotations

from controller.errors import ReconcileError

__all__ = ["InvalidSeedInput", "SeedError", "SeedTooLarge"]


class SeedError(ReconcileError):
    """A seed cannot be built from these values; the message is one line."""


class InvalidSeedInput(SeedError):
    """metaData or networkConfig is not of a form cloud-init reads."""


class SeedTooLarge(SeedError):
    """The seed's files add up to more than MAX_SEED_BYTES."""

    def __init__(self, *, size: int, limit: int) -> None:
        super().__init__(
            f"cloudInit: the seed's files add up to {_format_size(size)}, "
            f"more than the limit of {_format_size(limit)}"
        )
        self.size = size
        self.limit = limit


def _format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB ({size} bytes)"
    return f"{size} bytes"
