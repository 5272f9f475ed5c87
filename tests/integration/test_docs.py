"""The documentation stays true: the README's sample output, the manifest reference,
and the example manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.manifests import load_directory, schema
from tests.support.command import REPO


def test_readme_dry_run_sample_is_what_the_command_prints(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("RECONCILE_LOCK_DIR", str(tmp_path))
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- sample:dry-run[^>]*-->\n```\n(.*?)```\n<!-- /sample:dry-run -->",
                      readme, re.DOTALL)
    assert match, "the README lost its dry-run sample"
    code = main(["--once", "--dry-run", "--prune", "-m", str(REPO / "manifests"),
                 "-c", f"test:///{REPO}/examples/demo-host.xml"])
    assert code == 3
    assert capsys.readouterr().out == match.group(1)


def _schema_paths(node: dict[str, Any], prefix: str, root: dict[str, Any]) -> set[str]:
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    paths = set()
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}.{key}" if prefix else key
        paths.add(path)
        paths |= _schema_paths(child, path, root)
    if node.get("type") == "array" and "items" in node:
        paths |= _schema_paths(node["items"], f"{prefix}[]", root)
    return paths


def _documented(text: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z0-9.\[\]]+)` \|", text, re.MULTILINE))


def _reference_sections() -> dict[str, str]:
    """MANIFEST.md by kind: the VirtualMachine reference first, then one "## kind: X"
    section per other kind."""
    reference = (REPO / "docs" / "MANIFEST.md").read_text()
    parts = re.split(r"^## kind: (\w+)\n", reference, flags=re.MULTILINE)
    sections = {"VirtualMachine": parts[0]}
    sections.update(zip(parts[1::2], parts[2::2], strict=True))
    return sections


#: Documented fields of these kinds carry the kind first: `Image.spec.url`.
KINDS = ("Image",)
#: These kinds have a "## kind: X" section of their own, with unprefixed fields.
SECTION_KINDS = ("Network", "StoragePool")


def test_manifest_reference_lists_exactly_the_schema_fields() -> None:
    reference = "".join(text for kind, text in _reference_sections().items()
                        if kind not in SECTION_KINDS)
    documented = _documented(reference)
    vm = {path for path in documented if not path.startswith(tuple(f"{k}." for k in KINDS))}
    assert vm == _schema_paths(schema(), "", schema())
    for kind in KINDS:
        of_kind = {path.split(".", 1)[1] for path in documented if path.startswith(f"{kind}.")}
        fields = _schema_paths(schema(kind), "", schema(kind)) - {"apiVersion", "kind",
                                                                  "metadata", "spec"}
        assert of_kind == fields, kind


@pytest.mark.parametrize("kind", SECTION_KINDS)
def test_manifest_reference_lists_exactly_the_fields_of_each_kind(kind: str) -> None:
    sections = _reference_sections()
    assert kind in sections, f"docs/MANIFEST.md has no '## kind: {kind}' section"
    kind_schema = schema(kind)
    assert _documented(sections[kind]) == _schema_paths(kind_schema, "", kind_schema)


def test_example_manifests_are_valid_and_editor_aware() -> None:
    load = load_directory(str(REPO / "manifests"))
    assert load.invalid == []
    assert load.specs
    for path in (REPO / "manifests").glob("*.yaml"):
        assert "# yaml-language-server: $schema=../schemas/virtualmachine.schema.json" in \
            path.read_text(), path
