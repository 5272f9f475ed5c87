"""Issue 19 on the real libvirtd: every corpus definition is exported, validated, adopted
with zero XML change beyond the ownership marker, given a memory change that lands and
changes nothing else, and then plans nothing (the pipeline is in harness.py).

About 900 definitions take 1-2 minutes on 2 cores; `scripts/fidelity.py` prints the same
figures without asserting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.libvirtd import system_libvirtd_up

from . import harness
from .build_corpus import CORPUS, FAMILIES


@pytest.fixture(scope="module")
def report() -> harness.Report:
    system_libvirtd_up()
    return harness.run(harness.corpus_files())


def test_the_corpus_is_large_and_every_family_is_there() -> None:
    counts = {family: len(list((CORPUS / family).glob("*.xml"))) for family in FAMILIES}
    assert sum(counts.values()) >= 200, counts
    assert all(count > 0 for count in counts.values()), counts


@pytest.mark.parametrize("family", FAMILIES)
def test_every_definition_round_trips(report: harness.Report, family: str) -> None:
    cases = [c for c in report.cases if c.family == family]
    failed = [c for c in cases if not c.ok]
    assert cases
    assert not failed, f"{len(failed)} of {len(cases)} failed:\n" + "\n".join(
        f"{c.slug} at {c.failed}: {c.detail}" for c in failed[:10])


def test_what_export_leaves_out_is_said(report: harness.Report) -> None:
    """Block and network disks, direct and user NICs are in the corpus, and each time
    export says that it keeps them as they are."""
    notes = [note for c in report.cases for note in c.notes]
    for kind in ("a block disk", "a network disk", "a direct interface",
                 "a user interface", "a vhostuser interface", "a hostdev interface"):
        assert any(kind in note for note in notes), kind


def test_volume_disks_are_exported_as_volumes(report: harness.Report) -> None:
    """A disk that is a pool volume becomes a `volume:` disk with the volume's capacity,
    and round-trips like the rest."""
    volumes = [disk for c in report.passed() if c.document is not None
               for disk in c.document["spec"].get("disks", []) if "volume" in disk]
    assert len(volumes) >= 4, volumes
    assert all(disk["size"] == "1MiB" for disk in volumes), volumes


def test_nothing_is_left_behind(report: harness.Report) -> None:
    import libvirt

    connection = libvirt.open(harness.URI)
    try:
        names = {dom.name() for dom in connection.listAllDomains(0)}
    finally:
        connection.close()
    assert not names & {c.name for c in report.cases}


def test_the_corpus_files_are_what_build_corpus_writes() -> None:
    """Each family folder lists the origin of every file it holds, and nothing else."""
    for family in FAMILIES:
        folder: Path = CORPUS / family
        listed = {line.split("\t", 1)[0]
                  for line in (folder / "ORIGINS.tsv").read_text(encoding="utf-8").splitlines()}
        assert listed == {path.name for path in folder.glob("*.xml")}, family
