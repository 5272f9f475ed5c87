"""The soak's storage invariants, as pure functions over what the storage monitor read
(tests/soak/storage.py): snapshots of the soak's pools and the volume disks of its
domains. Each returns one line per violation.

- No volume lost: a volume once seen complete (no `NAME.reconcile-partial` marker in the
  same listing) is in every later listing, and its capacity never shrinks; a seed
  (`VM.cidata-<hex>.iso`) is the exception: reconcile deletes one no definition uses.
- No partial volume ever attached: every volume disk of a domain (saved and live
  definition) is a volume that exists, without a marker.
- An imported image is right: its volume's size and sha256 are those of the image file
  of that version.
Called by tests/soak/run.py; tested in tests/soak/test_soak_logic.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PARTIAL = ".reconcile-partial"
#: (pool, volume)
Key = tuple[str, str]


def is_seed(volume: str) -> bool:
    return ".cidata-" in volume


def complete(listing: Mapping[Key, int]) -> dict[Key, int]:
    """The complete volumes of one listing (key → capacity): no marker, not a marker."""
    return {key: capacity for key, capacity in listing.items()
            if not key[1].endswith(PARTIAL) and (key[0], key[1] + PARTIAL) not in listing}


@dataclass
class Ledger:
    """Every complete volume seen so far, with the largest capacity seen."""

    seen: dict[Key, int] = field(default_factory=dict)

    def observe(self, listing: Mapping[Key, int], *, pools: Iterable[str]) -> list[str]:
        """Check one listing of `pools` (key → capacity; a capacity of -1: it could not be
        read) against what was seen before, then remember it."""
        listed = set(pools)
        problems = []
        for key, before in sorted(self.seen.items()):
            if key[0] not in listed or is_seed(key[1]):
                continue
            if key not in listing:
                problems.append(f"volume {key[0]}/{key[1]} is lost (it was complete, "
                                f"{before} bytes)")
            elif 0 <= listing[key] < before:
                problems.append(f"volume {key[0]}/{key[1]} shrank: {before} -> "
                                f"{listing[key]} bytes")
            elif (key[0], key[1] + PARTIAL) in listing:
                problems.append(f"volume {key[0]}/{key[1]} was complete and has a partial "
                                "marker again (it is being written over)")
        for key, capacity in complete(listing).items():
            if capacity >= 0:
                self.seen[key] = max(capacity, self.seen.get(key, 0))
        return problems


def attached_incomplete(disks: Mapping[str, Iterable[Key]],
                        listing: Mapping[Key, int]) -> list[str]:
    """Volume disks (domain → its (pool, volume) disks) that are missing or partial."""
    problems = []
    for domain, keys in sorted(disks.items()):
        for pool, volume in sorted(set(keys)):
            if (pool, volume) not in listing:
                problems.append(f"{domain} has a disk on {pool}/{volume}, which does not exist")
            elif (pool, volume + PARTIAL) in listing:
                problems.append(f"{domain} has a disk on {pool}/{volume}, which is partial")
    return problems


@dataclass(frozen=True)
class ImageFile:
    sha256: str
    size: int


def image_problems(imported: Mapping[str, ImageFile], expected: Mapping[str, ImageFile]
                   ) -> list[str]:
    """Complete image volumes (name → what its file holds) that differ from the image
    file of their version (`expected`: volume name → the file's sum and size)."""
    problems = []
    for name, found in sorted(imported.items()):
        want = expected.get(name)
        if want is None:
            problems.append(f"image volume {name}: no image of the soak has that name")
        elif found != want:
            problems.append(f"image volume {name}: sha256 {found.sha256[:12]}, {found.size} "
                            f"bytes; the image is {want.sha256[:12]}, {want.size} bytes")
    return problems
