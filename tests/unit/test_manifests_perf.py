"""The loader's fast YAML path builds exactly what PyYAML's constructor builds, or leaves
the document to it: same documents, same errors, same node counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.manifests.yamlread import MAX_NODES as _MAX_NODES
from controller.manifests.yamlread import StrictLoader as _StrictLoader
from controller.manifests.yamlread import TooLarge as _TooLarge
from controller.manifests.yamlread import check_size as _check_size
from controller.manifests.yamlread import load_all as _load_all


def _pyyaml(text: str) -> tuple[str, Any]:
    try:
        return "ok", list(yaml.load_all(text, Loader=_StrictLoader))
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return type(exc).__name__, str(exc)


def _fast(text: str) -> tuple[str, Any]:
    try:
        pairs = list(_load_all(text))
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return type(exc).__name__, str(exc)
    for document, nodes in pairs:
        if nodes is not None:
            assert nodes == _count(document)
    return "ok", [document for document, _ in pairs]


def _count(document: Any) -> int:
    """Nodes as _check_size counts them (each key, value and item)."""
    if isinstance(document, dict):
        return 1 + sum(1 + _count(value) for value in document.values())
    if isinstance(document, list):
        return 1 + sum(_count(item) for item in document)
    return 1


def _same(text: str) -> None:
    expected, got = _pyyaml(text), _fast(text)
    assert got == expected
    if expected[0] == "ok":  # types too: True == 1 and 1 == 1.0 would hide a difference
        assert repr(got[1]) == repr(expected[1])


TRICKY = [
    "a: 1\nb: [1, 2, {c: d}]\n",
    "a: &x {b: 1}\nc: *x\n",  # alias: PyYAML's constructor
    "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n",  # merge key
    "a: 1\na: 2\n",  # duplicate key
    "? [1, 2]\n: x\n",  # a list as a key
    "1: one\n",  # an int key
    "a: 1.5\nb: .inf\nc: 1e3\n",
    "a: 2024-02-30\n",  # timestamp that does not exist
    "a: 2024-02-03\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!int ''\n",
    "a: 0x_\n",
    "a: 0x1F\nb: 0o17\nc: 1_000\nd: 190:20:30\ne: -0b101\n",
    "a: yes\nb: No\nc: ~\nd: null\ne: ''\nf: '1'\n",
    "a: !!str 12\nb: !!set {x, y}\nc: !!omap [a: 1]\n",
    "!!str {a: 1}\n",
    "a: !custom 1\n",
    "= : x\n",
    "---\n---\na: 1\n---\n...\n",
    "",
    "- a\n- - b\n  - c: [d, {e: f}]\n",
    "a: [1, 2\n",  # not YAML
    "a: b: c\n",
    "\t- x\n",
    "a: *missing\n",
    "[" * 200 + "]" * 200,
    "a:\n" + "".join(f"  k{i}: v{i}\n" for i in range(50)),
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_texts(text: str) -> None:
    _same(text)


scalars = st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none(),
                    st.floats(allow_nan=False), st.sampled_from(["yes", "0x1f", "1_0", "~",
                                                                 "2024-01-01", "<<", "="]))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children, max_size=4)),
    max_leaves=20)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(document=values, flow=st.booleans())
def test_dumped_documents(document: Any, flow: bool) -> None:
    _same(yaml.safe_dump(document, default_flow_style=flow))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(tokens=st.lists(st.sampled_from(
    ["a", ":", " ", "\n", "  ", "- ", "&x ", "*x", "!!str ", "!!int ", "1", "1.0", "[", "]",
     "{", "}", ",", "'q'", "---\n", "<<", "? ", "yes", "~", "#c"]), max_size=30))
def test_token_soup(tokens: list[str]) -> None:
    _same("".join(tokens))


def test_size_of_a_plain_tree_is_counted_without_a_walk() -> None:
    text = "[" + ", ".join(["1"] * (_MAX_NODES + 5)) + "]"
    ((document, nodes),) = list(_load_all(text))
    assert nodes == _MAX_NODES + 6
    with pytest.raises(_TooLarge):
        _check_size(document)


def test_the_generated_validator_is_current_and_used() -> None:
    """controller/_fastschema.py is what fastjsonschema makes of the schema today; after a
    schema change, regenerate it (see manifests.validation._fast_validator): the loader
    stays right without it (it compiles the schema itself), only slower."""
    from controller import _fastschema, manifests
    from controller.manifests import validation

    assert _fastschema.SCHEMA_TEXT == validation._schema_text()
    assert (Path(_fastschema.__file__).read_text(encoding="utf-8")
            == manifests.fast_validator_source())
    assert validation._fast_validator() is _fastschema.validate


@pytest.mark.parametrize("document", [
    {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": "a"},
     "spec": {"memory": "64MiB", "vcpus": 1}},
    {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": "-a"}},
    {"apiVersion": "reconcile/v1", "kind": "VirtualMachine", "metadata": {"name": "a"},
     "spec": {"vcpus": "1"}},
    {"kind": "VirtualMachine"},
    [],
])
def test_the_generated_validator_agrees_with_a_fresh_compile(document: Any) -> None:
    import fastjsonschema

    from controller import _fastschema
    from controller.manifests import schema

    def verdict(validate: Any) -> bool:
        try:
            validate(document)
        except Exception:  # noqa: BLE001 - a verdict, not handled
            return False
        return True

    assert verdict(_fastschema.validate) == verdict(fastjsonschema.compile(schema()))
