"""The compiled schema validator is a fast path only: whatever it accepts, the reference
validator (jsonschema, with the loader's strict integers and ECMA patterns) accepts too."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.manifests.validation import fast_valid as _fast_valid
from controller.manifests.validation import validator as _validator
from tests.safety.strategies import mutated_document, valid_document

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(valid_document())
def test_valid_documents_take_the_fast_path(document: dict[str, Any]) -> None:
    assert _validator().is_valid(document)
    assert _fast_valid(document)


@SETTINGS
@given(mutated_document())
def test_the_fast_path_never_accepts_what_the_reference_refuses(document: Any) -> None:
    try:
        reference = _validator().is_valid(document)
    except RecursionError:
        reference = False
    if _fast_valid(document):
        assert reference


def test_floats_always_go_to_the_reference() -> None:
    document: dict[str, Any] = {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
                                "metadata": {"name": "a"}, "spec": {"memory": 64, "vcpus": 2.0}}
    assert not _fast_valid(document)
    assert not _validator().is_valid(document)


@given(st.just(None))
def test_non_documents(document: None) -> None:
    assert not _fast_valid(document)
