"""YAML as the manifest loader reads it: safe, strict, and fast.

Duplicate keys are refused; a plain tree (no anchors or aliases) is built straight
from the C parser's nodes, about twice as fast as PyYAML's constructor and with the
same documents and errors; anything else goes to PyYAML unchanged, with a size check
against alias bombs ("billion laughs").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

#: Upper bound on nodes in one document with aliases expanded ("billion laughs").
MAX_NODES = 100_000

_STR_TAG = "tag:yaml.org,2002:str"


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loader (the C one when available) that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _STR_TAG:  # the usual case: a string is its text
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark,
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        """PyYAML's tag resolution, memoised: a pure function of its arguments here (no
        path resolvers), and the same keys and values recur in every manifest."""
        if value is not None and len(value) > 64:
            return super().resolve(kind, value, implicit)  # type: ignore[no-any-return]
        key = (kind, value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVED) < 4096:
                _RESOLVED[key] = tag
        return tag


_RESOLVED: dict[tuple[type, Any, Any], str] = {}
_INT_TAG = "tag:yaml.org,2002:int"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _NotPlain(Exception):
    """A node that `_plain` leaves to PyYAML's own constructor."""


def load_all(text: str) -> Iterator[tuple[Any, int | None]]:
    """Like yaml.load_all with StrictLoader: yield (document, nodes) per document.

    A document that is a plain tree (no anchors or aliases; only maps, lists, strings,
    ints, booleans and nulls; no duplicate or non-string keys) is built directly from
    its nodes, about twice as fast as PyYAML's constructor, and `nodes` is its size.
    Anything else, and any error, goes to PyYAML's constructor unchanged, with `nodes`
    None: the caller must still check its size.
    """
    loader = StrictLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            seen: set[int] = set()
            try:
                document = _plain(loader, node, seen)
            except Exception:  # noqa: BLE001 - PyYAML decides, and raises its own error
                yield loader.construct_document(node), None
            else:
                yield document, len(seen)
    finally:
        loader.dispose()


def _plain(loader: Any, node: yaml.Node, seen: set[int]) -> Any:
    """The document `node` stands for, as PyYAML would build it; `seen` collects the ids
    of the nodes visited, and a node met twice (an alias) raises _NotPlain."""
    if id(node) in seen:
        raise _NotPlain
    seen.add(id(node))
    kind, tag = node.__class__, node.tag
    if kind is yaml.ScalarNode:
        if tag == _STR_TAG:
            return node.value
        if tag == _INT_TAG:
            return loader.construct_yaml_int(node)
        if tag == _BOOL_TAG:
            return loader.construct_yaml_bool(node)
        if tag == _NULL_TAG:
            return None
    elif kind is yaml.MappingNode and tag == _MAP_TAG:
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if (key_node.__class__ is not yaml.ScalarNode or key_node.tag != _STR_TAG
                    or id(key_node) in seen or key_node.value in mapping):
                raise _NotPlain
            seen.add(id(key_node))
            mapping[key_node.value] = _plain(loader, value_node, seen)
        return mapping
    elif kind is yaml.SequenceNode and tag == _SEQ_TAG:
        return [_plain(loader, item, seen) for item in node.value]
    raise _NotPlain


def yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(problem).split())  # a ReaderError's text spans two lines


class TooLarge(Exception):
    pass


TOO_LARGE = f"more than {MAX_NODES} nodes once aliases are expanded"


def check_size(document: Any) -> None:
    """Refuse documents whose aliases expand past a sane size."""
    budget = MAX_NODES
    stack = [document]
    while stack:
        budget -= 1
        if budget < 0:
            raise TooLarge(TOO_LARGE)
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
