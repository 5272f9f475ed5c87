"""The Image schema's validator generated ahead (controller/_fastschema_image.py): it is
what fastjsonschema makes of schemas/image.schema.json today, the loader uses it, and a
pass over an Image no longer compiles a validator (or imports fastjsonschema) at start-up
(it cost every pass with an Image ~15 ms: benchmarks/results/STORAGE-NOTES.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_schema_fast_path_kinds import IMAGE, SHA

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_image_validator_is_current_and_used() -> None:
    """After a change of the Image schema, regenerate it:
    `python -c 'import controller.manifests as m; m.write_fast_validator("Image")'`
    (stale, it is not used: the loader compiles the schema itself, only slower)."""
    from controller import _fastschema_image, manifests
    from controller.manifests import validation

    assert _fastschema_image.SCHEMA_TEXT == validation._schema_text("Image")
    assert (Path(_fastschema_image.__file__).read_text(encoding="utf-8")
            == manifests.fast_validator_source("Image"))
    assert validation._fast_kind_validator("Image") is _fastschema_image.validate


def test_writing_a_validator_for_another_kind_is_refused() -> None:
    from controller.manifests import validation

    with pytest.raises(ValueError, match="Hosts"):
        validation.write_fast_validator("Hosts")


@pytest.mark.parametrize("document", [
    IMAGE,
    {**IMAGE, "spec": {**IMAGE["spec"], "sha256": SHA[:-1]}},
    {**IMAGE, "spec": {**IMAGE["spec"], "url": "ftp://x/y"}},
    {**IMAGE, "metadata": {"name": "-a"}},
    {**IMAGE, "extra": 1},
    {"kind": "Image"},
    [],
])
def test_the_generated_image_validator_agrees_with_a_fresh_compile(document: Any) -> None:
    import fastjsonschema

    from controller import _fastschema_image
    from controller.manifests import schema

    def verdict(validate: Any) -> bool:
        try:
            validate(document)
        except Exception:  # noqa: BLE001 - a verdict, not handled
            return False
        return True

    assert verdict(_fastschema_image.validate) == verdict(
        fastjsonschema.compile(schema("Image")))


def test_a_tree_with_an_image_loads_without_fastjsonschema(tmp_path: Path) -> None:
    """Both kinds of the tree (VirtualMachine, Image) take generated validators."""
    (tmp_path / "image.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Image\nmetadata:\n  name: base\n"
        f"spec:\n  url: https://images.example/base.qcow2\n  sha256: {SHA}\n")
    (tmp_path / "vm.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata:\n  name: vm\n"
        "spec:\n  memory: 64MiB\n  vcpus: 1\n  disks:\n"
        "    - volume: vm-root\n      image: base\n")
    code = ("import sys\nfrom controller.manifests import load_directory\n"
            f"load = load_directory({str(tmp_path)!r})\n"
            "assert not load.invalid, load.invalid\n"
            "assert sorted(load.specs) == ['vm'] and sorted(load.images) == ['base']\n"
            "print('fastjsonschema' in sys.modules, 'jsonschema' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
