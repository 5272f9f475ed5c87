"""A fixed corpus of bad manifests, through the real `reconcile` command in a child process.

Each corpus file is one known way to be wrong, with the exact entry it must produce; the
same directory also holds valid manifests that must still be reconciled. Unreadable files
need a child without CAP_DAC_OVERRIDE when the tests run as root (see `unprivileged`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_URI
from tests.support.command import run_reconcile, without_dac_override

from .conftest import count
from .strategies import billion_laughs


def vm(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": name},
            "spec": {"state": "stopped", "memory": 64, "vcpus": 1, "stopTimeout": 0, **spec}}


def text(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False)


VALID = ["corpus-good", "corpus-inner", "corpus-multi-ok"]


def write_corpus(directory: Path, images: Path, marker: Path) -> list[tuple[str, int | None,
                                                                              str, str]]:
    """Write the corpus; return the (file, document, path, error prefix) it must produce."""
    files: dict[str, str | bytes] = {
        "good.yaml": text(vm("corpus-good")),
        "bomb.yaml": billion_laughs("corpus-bomb"),
        "deep.yaml": "[" * 20_000 + "]" * 20_000 + "\n",
        "binary.yaml": bytes(range(256)),
        "nul.yaml": "apiVersion: reconcile/v1\x00\n",
        "dup.yaml": text(vm("corpus-dup")) + "kind: VirtualMachine\n",
        "python.yaml": text(vm("corpus-python")) +
        f"x: !!python/object/apply:os.system ['touch {marker}']\n",
        "date.yaml": text(vm("corpus-date")).replace(
            "metadata:\n", "metadata:\n  labels: {created: 2024-02-30}\n"),
        "empty-int.yaml": text(vm("corpus-int")) + "x: !!int ''\n",
        "huge.yaml": text(vm("corpus-huge", vcpus=2**64)),
        "float.yaml": text(vm("corpus-float", memory=64.0)),
        "petabytes.yaml": text(vm("corpus-pib", memory="2048 TiB")),
        "negative.yaml": text(vm("corpus-negative", stopTimeout=-1)),
        "unicode-name.yaml": text(vm("ünï-вм")),
        "newline-name.yaml": text(vm("web\n")),
        "xml-name.yaml": text(vm("a<b>&'\"]]>")),
        "traversal.yaml": text(vm("corpus-traversal",
                                  disks=[{"source": f"{images}/../../etc/shadow"}])),
        "shared.yaml": text(vm("corpus-shared", disks=[{"source": f"{images}/good.qcow2"}])),
        "extra.yaml": text({**vm("corpus-extra"), "status": {"x": 1}}),
        "missing.yaml": text({k: v for k, v in vm("corpus-missing").items() if k != "kind"}),
        "list.yaml": text({**vm("x"), "metadata": ["name", "corpus-list"]}),
        "multi.yaml": "---\n".join([text(vm("corpus-multi-ok")), "",
                                    text(vm("corpus-multi-bad", vcpus="two"))]),
        "labels.yaml": text({**vm("corpus-labels"),
                             "metadata": {"name": "corpus-labels", "labels": {1: "x"}}}),
        "new\nline.yaml": "{",
        "esc\x1b[2J.yaml": "- [",
        "empty.yaml": "",
        "comments.yaml": "# nothing here\n---\n---\n",
    }
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (directory / "good.yaml").write_text(text(vm("corpus-good", disks=[
        {"source": f"{images}/good.qcow2"}])))
    (directory / "folder.yaml").mkdir()
    (directory / "folder.yaml" / "inner.yaml").write_text(text(vm("corpus-inner")))
    (directory / "empty-folder.yaml").mkdir()
    (directory / "dangling.yaml").symlink_to(directory / "nowhere.yaml")
    Path(os.fsdecode(os.fsencode(directory) + b"/\xff-latin1-\xe9.yaml")).write_text(
        text(vm("corpus-bytes-name")))
    os.mkfifo(directory / "fifo.yaml")
    return [
        ("binary.yaml", None, "",
         "cannot read: 'utf-8' codec can't decode byte 0x80 in position 128: invalid start byte"),
        ("bomb.yaml", 0, "", "not usable YAML: more than 100000 nodes once aliases are expanded"),
        ("dangling.yaml", None, "", "cannot read: not a regular file"),
        ("date.yaml", 0, "",
         "not valid YAML: cannot construct a value: day is out of range for month"),
        ("deep.yaml", 0, "", "not valid YAML: "),
        ("dup.yaml", 0, "", "not valid YAML: duplicate key 'kind' (line "),
        ("empty-int.yaml", 0, "", "not valid YAML: cannot construct a value: "),
        ("esc\x1b[2J.yaml", 0, "", "not valid YAML: "),
        ("extra.yaml", 0, "status", "unknown field(s) ('status' was unexpected)"),
        ("fifo.yaml", None, "", "cannot read: not a regular file"),
        ("float.yaml", 0, "spec.memory", "64.0 is not a memory size"),
        ("huge.yaml", 0, "spec.vcpus",
         "18446744073709551616 is greater than the maximum of 4096"),
        ("labels.yaml", 0, "metadata.labels", "1 is not of type 'string'"),
        ("list.yaml", 0, "metadata", "['name', 'corpus-list'] is not of type 'object'"),
        ("missing.yaml", 0, "kind", "'kind' is a required property"),
        # the empty document in between counts: the index is the position in the file
        ("multi.yaml", 2, "spec.vcpus", "'two' is not of type 'integer'"),
        ("negative.yaml", 0, "spec.stopTimeout", "-1 is less than the minimum of 0"),
        ("new\nline.yaml", 0, "", "not valid YAML: "),
        ("newline-name.yaml", 0, "metadata.name", "'web\\n' does not match "),
        ("nul.yaml", 0, "", "not valid YAML: unacceptable character #x0000: "),
        ("petabytes.yaml", 0, "spec.memory", "'2048 TiB' is larger than 1 PiB"),
        ("python.yaml", 0, "", ("not valid YAML: could not determine a constructor for the "
                                "tag 'tag:yaml.org,2002:python/object/apply:os.system'")),
        ("shared.yaml", 0, "spec.disks[0].source",
         f"{images}/good.qcow2 is already the disk of 'corpus-good' (good.yaml[0])"),
        ("traversal.yaml", 0, "spec.disks[0].source",
         f"{images}/../../etc/shadow (resolves to {images.parent.parent}/etc/shadow) is outside"),
        ("unicode-name.yaml", 0, "metadata.name", "'ünï-вм' does not match "),
        ("xml-name.yaml", 0, "metadata.name", "'a<b>&\\'\"]]>' does not match "),
        ("\\xff-latin1-\\xe9.yaml", None, "", "the file name is not valid UTF-8"),
    ]


def run(*argv: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    wrapper = without_dac_override("a file") if unprivileged else []
    completed = run_reconcile(*argv, wrapper=wrapper)
    assert "Traceback" not in completed.stdout + completed.stderr
    return completed


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path, Path, list[tuple[str, int | None, str, str]]]:
    directory, images = tmp_path / "manifests", tmp_path / "images"
    directory.mkdir()
    images.mkdir()
    marker = tmp_path / "pwned"
    expected = write_corpus(directory, images, marker)
    return directory, images, marker, expected


def check_invalid(found: list[dict[str, Any]],
                  expected: list[tuple[str, int | None, str, str]]) -> None:
    assert sorted((e["file"], e["document"] if e["document"] is not None else -1, e["path"])
                  for e in found) == sorted(
        (file, document if document is not None else -1, path)
        for file, document, path, _ in expected)
    errors = {(e["file"], e["path"]): e["error"] for e in found}
    for file, _, path, prefix in expected:
        assert errors[(file, path)].startswith(prefix), (file, errors[(file, path)])
        assert "\n" not in errors[(file, path)]


Corpus = tuple[Path, Path, Path, list[tuple[str, int | None, str, str]]]


def test_validate_json_reports_every_bad_file_exactly(corpus: Corpus) -> None:
    directory, images, marker, expected = corpus
    completed = run("validate", "-m", str(directory), "--disk-root", str(images), "-o", "json")
    assert completed.returncode == 2, completed.stderr
    report = json.loads(completed.stdout)
    assert report["valid"] == VALID
    check_invalid(report["invalid"], expected)
    assert not marker.exists(), "a YAML tag ran a command"
    count("injected inputs rejected", len(expected))


def test_validate_text_prints_one_line_per_problem(corpus: Corpus) -> None:
    directory, images, _, expected = corpus
    completed = run("validate", "-m", str(directory), "--disk-root", str(images))
    assert completed.returncode == 2
    lines = completed.stdout.splitlines()
    assert lines[-1] == f"{len(VALID)} valid VM manifests, {len(expected)} invalid"
    assert len(lines) == len(expected) + 1
    assert all(line.startswith("invalid: ") for line in lines[:-1])
    assert "invalid: new\\nline.yaml[0]: not valid YAML: " in completed.stdout
    assert "invalid: esc\\x1b[2J.yaml[0]: not valid YAML: " in completed.stdout
    assert "\x1b" not in completed.stdout


def test_once_reconciles_the_valid_ones_and_prunes_nothing(corpus: Corpus,
                                                           tmp_path: Path) -> None:
    directory, images, marker, expected = corpus
    completed = run("--once", "-m", str(directory), "--disk-root", str(images), "-c", TEST_URI,
                    "--prune", "--max-prune", "100", "--lock-dir", str(tmp_path / "locks"),
                    "-o", "json")
    assert completed.returncode == 2, completed.stderr
    report = json.loads(completed.stdout)
    assert [(vm["name"], vm["result"], vm["error"]) for vm in report["vms"]] == [
        (name, "converged", None) for name in VALID]
    check_invalid(report["invalid"], expected)
    assert report["orphans"] == []
    assert not marker.exists()


def test_unreadable_files_and_folders(corpus: Corpus, tmp_path: Path) -> None:
    directory, images, _, expected = corpus
    (directory / "secret.yaml").write_text(text(vm("corpus-secret")))
    (directory / "secret.yaml").chmod(0)
    (directory / "locked").mkdir()
    (directory / "locked" / "inner.yaml").write_text(text(vm("corpus-locked")))
    (directory / "locked").chmod(0)
    expected = [*expected, ("secret.yaml", None, "", "cannot read: Permission denied"),
                ("locked", None, "", "cannot read: Permission denied")]
    try:
        validated = run("validate", "-m", str(directory), "--disk-root", str(images),
                        "-o", "json", unprivileged=True)
        once = run("--once", "-m", str(directory), "--disk-root", str(images), "-c", TEST_URI,
                   "--prune", "--lock-dir", str(tmp_path / "locks"), "-o", "json",
                   unprivileged=True)
    finally:
        (directory / "locked").chmod(0o755)
    assert validated.returncode == 2, validated.stderr
    check_invalid(json.loads(validated.stdout)["invalid"], expected)
    assert once.returncode == 2, once.stderr
    report = json.loads(once.stdout)
    check_invalid(report["invalid"], expected)
    assert [vm["name"] for vm in report["vms"]] == VALID
    count("injected inputs rejected", 2)


def test_an_unreadable_manifest_directory(tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    (directory / "a.yaml").write_text(text(vm("a")))
    directory.chmod(0)
    try:
        completed = run("validate", "-m", str(directory), "-o", "json", unprivileged=True)
    finally:
        directory.chmod(0o755)
    # like a missing directory: a usage error, one line, nothing on stdout
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == (
        f"reconcile: error: manifest directory {directory} is not readable\n")
