"""Checking documents against the JSON Schemas of `schemas/`.

The generated fastjsonschema validator (_fastschema.py) accepts the usual valid
document about 10x faster than jsonschema; anything it doubts goes to jsonschema,
which also says what is wrong: the field path and a reason of one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import name_of
from .result import Invalid, LoadResult, printable

if TYPE_CHECKING:  # imported when first needed: it costs ~35 ms at start-up
    import jsonschema

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
GENERATED = Path(__file__).resolve().parent.parent / "_fastschema.py"
#: The Image schema's validator, generated ahead likewise: every pass with an Image
#: compiled it (~15 ms, more on a loaded machine).
GENERATED_IMAGE = GENERATED.with_name("_fastschema_image.py")


#: The kinds of document and their schemas (schemas/*.schema.json).
SCHEMA_FILES = {
    "VirtualMachine": "virtualmachine.schema.json",
    "Image": "image.schema.json",
    "Network": "network.schema.json",
    "StoragePool": "storagepool.schema.json",
    "Hosts": "hosts.schema.json",
}


@cache
def schema(kind: str = "VirtualMachine") -> dict[str, Any]:
    text = SCHEMAS / SCHEMA_FILES[kind]
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


def hosts_schema() -> dict[str, Any]:
    return schema("Hosts")


@cache
def validator(kind: str = "VirtualMachine") -> jsonschema.protocols.Validator:
    import jsonschema

    the_schema = schema(kind)
    cls = jsonschema.validators.validator_for(the_schema)
    cls.check_schema(the_schema)
    # JSON Schema counts 64.0 as an integer; the loader and libvirt want an int.
    strict_integers = cls.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    extended = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"pattern": _ecma_pattern}, type_checker=strict_integers)
    checker: jsonschema.protocols.Validator = extended(the_schema)
    return checker


def _ecma_pattern(validator: Any, pattern: str, instance: Any,
                  _schema: Any) -> Iterator[jsonschema.ValidationError]:
    """`pattern` as JSON Schema defines it (ECMA-262): a final `$` is the very end of
    the string. Python's `$` also matches before a final newline, which let "web\n"
    through as a name."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        import jsonschema

        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


@cache
def _fast_validator() -> Callable[[Any], Any]:
    """fastjsonschema's validator for the schema. Compiling it costs ~10 ms per process
    (it generates and compiles 80 kB of Python), so a copy generated ahead is kept in
    _fastschema.py and imported from its cached bytecode instead, but only while it was
    generated from this very schema file (it keeps the file's text); regenerate it with
    `python -c 'import controller.manifests as m; m.write_fast_validator()'`."""
    try:
        from .. import _fastschema
    except ImportError:
        pass
    else:
        if getattr(_fastschema, "SCHEMA_TEXT", None) == _schema_text():
            generated: Callable[[Any], Any] = _fastschema.validate
            return generated
    import fastjsonschema

    validate: Callable[[Any], Any] = fastjsonschema.compile(schema())
    return validate


def _schema_text(kind: str = "VirtualMachine") -> str:
    schema_file = SCHEMAS / SCHEMA_FILES[kind]
    return schema_file.read_text(encoding="utf-8")


def fast_validator_source(kind: str = "VirtualMachine") -> str:
    """The text of _fastschema.py (of _fastschema_image.py for kind Image): fastjsonschema's
    code for the schema, made independent of fastjsonschema itself (only pass or raise
    matters: any doubt goes to jsonschema)."""
    import fastjsonschema

    code = fastjsonschema.compile_to_code(schema(kind))
    imported = "from fastjsonschema import JsonSchemaValueException, JsonSchemaValuesException"
    if imported not in code:
        raise RuntimeError("fastjsonschema's generated code changed shape; look at it first")
    code = code.replace(imported, (
        "class JsonSchemaValueException(ValueError):\n"
        "    def __init__(self, message='', *args, **kwargs):\n"
        "        super().__init__(message)\n\n\n"
        "JsonSchemaValuesException = JsonSchemaValueException"))
    main = re.search(r"^def (validate_\w+)\(", code, re.MULTILINE)
    if main is None:
        raise RuntimeError("no validation function in fastjsonschema's generated code")
    argument = "" if kind == "VirtualMachine" else f'"{kind}"'
    return (f'"""Generated from schemas/{SCHEMA_FILES[kind]} by fastjsonschema '
            f'{fastjsonschema.VERSION}; do not edit.\n\nRegenerate with '
            f"`python -c 'import controller.manifests as m; "
            f"m.write_fast_validator({argument})'`; "
            f'controller/manifests.py\nuses it only while SCHEMA_TEXT is the schema '
            f'file\'s text."""\n# ruff: noqa\n# mypy: ignore-errors\n\n'
            f'SCHEMA_TEXT = {_schema_text(kind)!r}\n\n{code.strip()}\n\n\n'
            f"validate = {main.group(1)}\n")


def write_fast_validator(kind: str = "VirtualMachine") -> None:
    target = GENERATED_IMAGE if kind == "Image" else GENERATED
    if kind not in ("VirtualMachine", "Image"):
        raise ValueError(f"no generated validator for kind {kind!r}")
    target.write_text(fast_validator_source(kind), encoding="utf-8")


@cache
def _fast_image_validator() -> Callable[[Any], Any] | None:
    """_fastschema_image.py's validator while it was generated from this very Image
    schema (as `_fast_validator`), else None."""
    try:
        from .. import _fastschema_image
    except ImportError:
        return None
    if getattr(_fastschema_image, "SCHEMA_TEXT", None) != _schema_text("Image"):
        return None
    generated: Callable[[Any], Any] = _fastschema_image.validate
    return generated


@cache
def _fast_kind_validator(kind: str) -> Callable[[Any], Any]:
    """fastjsonschema's validator for the small schemas (Image, Hosts), compiled on first
    use: a few ms, and importing fastjsonschema costs ~30 ms where importing jsonschema
    costs ~150 ms (0.4 s on a loaded machine), which every pass with an Image paid."""
    if kind == "VirtualMachine":
        return _fast_validator()
    if kind == "Image":
        generated = _fast_image_validator()
        if generated is not None:
            return generated
    import fastjsonschema

    validate: Callable[[Any], Any] = fastjsonschema.compile(schema(kind))
    return validate


def fast_valid(document: Any, kind: str = "VirtualMachine", *, floats: bool = True) -> bool:
    """The compiled validator's verdict, about 10x faster than jsonschema's; trusted only
    when it accepts a document without floats (it counts 2.0 as an integer, and the
    schemas have no number fields). Everything else goes to jsonschema, which also
    explains what is wrong. `floats=False`: the caller knows the document holds none
    (a plain tree from yamlread.load_all), so it is not searched for them."""
    try:
        _fast_kind_validator(kind)(document)
    except Exception:  # noqa: BLE001 - any doubt goes to the full validator
        return False
    return not (floats and _has_float(document))


def _has_float(document: Any) -> bool:
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def check_document(document: Any, relative: str, index: int, result: LoadResult,
                    kind: str = "VirtualMachine", *, floats: bool = True) -> bool:
    """Schema-check one document; record why it is invalid and return False if so.
    `floats`: see fast_valid."""
    if fast_valid(document, kind, floats=floats):
        return True
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(validator(kind).iter_errors(document))
    except RecursionError:
        path, reason = "", "nested too deeply"
    else:
        if error is None:
            return True
        path, reason = _error_path(error), _schema_reason(error)
    name = name_of(document)
    if name:
        result.refuse(kind, name, relative)
    result.invalid.append(Invalid(relative, index, path, reason))
    return False


def _error_path(error: jsonschema.ValidationError) -> str:
    """The path of the offending field: for a missing or unknown field, that field itself."""
    parts = list(error.absolute_path)
    if isinstance(error.instance, dict):
        if error.validator == "required" and isinstance(error.validator_value, list):
            missing = [key for key in error.validator_value if key not in error.instance]
            parts += missing[:1]
        elif error.validator == "additionalProperties" and isinstance(error.schema, dict):
            known = error.schema.get("properties", {})
            unknown = sorted((key for key in error.instance if key not in known), key=str)
            parts += [str(key) for key in unknown[:1]]
    return _json_path(parts)


def _json_path(parts: Iterable[object]) -> str:
    path = ""
    for part in parts:
        part = part if isinstance(part, int) else printable(str(part))
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _schema_reason(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        message = error.message.replace("Additional properties are not allowed",
                                        "unknown field(s)")
    elif list(error.absolute_path) in (["spec", "memory"], ["spec", "currentMemory"]):
        return (f"{shown(error.instance)} is not a memory size (an integer of MiB, "
                "or e.g. '512MiB', '2GiB')")
    elif error.validator == "oneOf" and "interfaces" in error.path:
        return "an interface needs exactly one of network: or bridge:"
    elif error.validator == "oneOf" and "disks" in error.path:
        return ("a disk needs exactly one of source: (a file) or volume: (pool, image, copy, "
                "size and onRemove go with volume:)")
    elif error.validator in ("maxItems", "minItems") and isinstance(error.instance, list):
        bound = "at most" if error.validator == "maxItems" else "at least"
        return f"{len(error.instance)} items; {bound} {error.validator_value} allowed"
    else:
        message = error.message
        if len(message) > 300:  # jsonschema quotes the whole value first ("[...] is too
            # long"): quote it short, so that the reason at the end is not cut off
            message = message.replace(repr(error.instance), shown(error.instance), 1)
    return message if len(message) <= 300 else message[:297] + "..."


def shown(value: Any) -> str:
    """A value as an error message quotes it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
