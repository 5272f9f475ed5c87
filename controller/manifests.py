"""Reading the manifest directory: files, YAML, JSON Schema, cross-document checks.

Called by the CLI (validate, --once) and the service. Pure apart from reading
files. Everything wrong is collected as `Invalid` entries (file, document
index, field path, reason) and never raised, so one bad file cannot stop the
others from being reconciled. A name seen in an invalid document is kept in
`invalid_names`: its domain must be left exactly as it is.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .domainxml import disk_target_name
from .model import DesiredState, Disk, Interface, MoveStrategy, UpdatePolicy, VMSpec
from .units import parse_memory_kib

if TYPE_CHECKING:  # imported when first needed: it costs ~35 ms at start-up
    import jsonschema

DEFAULT_DISK_ROOTS = ("/var/lib/libvirt/images",)
_EDITOR_LEFTOVERS = re.compile(r"(~$|^\.#|\.swp$|\.swx$|\.tmp$|^4913$)")
#: Upper bound on nodes in one document with aliases expanded ("billion laughs").
_MAX_NODES = 100_000
_MAX_FILE_BYTES = 16 * 1024 * 1024
_NOT_A_FILE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)
#: The one file that may hold the `kind: Hosts` document, at the root of the tree.
HOSTS_FILE = "hosts.yaml"


@dataclass(frozen=True)
class Invalid:
    file: str
    document: int | None
    path: str
    error: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "document": self.document, "path": self.path,
                "error": self.error}

    def __str__(self) -> str:
        file = printable(self.file)
        where = file if self.document is None else f"{file}[{self.document}]"
        return f"{where}: {self.path + ': ' if self.path else ''}{self.error}"


def printable(text: str) -> str:
    """`text` with unprintable characters escaped: a file name or key cannot forge a line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


@dataclass
class LoadResult:
    directory: str
    specs: dict[str, VMSpec] = field(default_factory=dict)
    invalid: list[Invalid] = field(default_factory=list)
    invalid_names: set[str] = field(default_factory=set)
    problem: str | None = None  # the directory itself is missing, unreadable, or empty
    documents: int = 0  # VirtualMachine documents, valid or not
    warnings: list[str] = field(default_factory=list)  # e.g. files others may write
    hosts: dict[str, str] = field(default_factory=dict)  # hosts.yaml and --host NAME=URI
    hosts_documents: int = 0  # Hosts documents seen in hosts.yaml, valid or not

    @property
    def prune_safe(self) -> bool:
        """Whether this load is complete enough to call a managed domain an orphan."""
        return self.problem is None and not self.invalid and self.documents > 0


@cache
def schema() -> dict[str, Any]:
    text = Path(__file__).with_name("schemas") / "virtualmachine.schema.json"
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


@cache
def hosts_schema() -> dict[str, Any]:
    text = Path(__file__).with_name("schemas") / "hosts.schema.json"
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator(kind: str = "VirtualMachine") -> jsonschema.protocols.Validator:
    import jsonschema

    the_schema = hosts_schema() if kind == "Hosts" else schema()
    cls = jsonschema.validators.validator_for(the_schema)
    cls.check_schema(the_schema)
    # JSON Schema counts 64.0 as an integer; the loader and libvirt want an int.
    strict_integers = cls.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    extended = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        cls, {"pattern": _ecma_pattern}, type_checker=strict_integers)
    validator: jsonschema.protocols.Validator = extended(the_schema)
    return validator


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


def load_directory(directory: str, *, disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS,
                   strict_permissions: bool = False,
                   extra_hosts: Mapping[str, str] | None = None) -> LoadResult:
    """Load, validate and cross-check every manifest under `directory`.

    A file or folder that a user other than root and this process's may write is
    warned about, like sshd's StrictModes; with `strict_permissions` its
    manifests are refused as invalid. `extra_hosts` (from --host NAME=URI) add to
    or override the hosts of hosts.yaml.
    """
    result = LoadResult(directory=directory)
    root = Path(directory)
    if not root.exists():
        result.problem = f"manifest directory {directory} does not exist"
        return result
    if not root.is_dir():
        result.problem = f"manifest path {directory} is not a directory"
        return result
    if not os.access(root, os.R_OK | os.X_OK):
        result.problem = f"manifest directory {directory} is not readable"
        return result

    candidates: list[tuple[str, int, dict[str, Any]]] = []
    walk_errors: list[OSError] = []
    checked_folders: dict[Path, str | None] = {}
    for folder, path, relative in _manifest_files(root, walk_errors):
        if not relative.isprintable() and any("\udc80" <= ch <= "\udcff" for ch in relative):
            # undecodable bytes: shown as \xNN, so reports stay valid UTF-8
            shown = relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            result.invalid.append(Invalid(shown, None, "", "the file name is not valid UTF-8"))
            continue
        if folder not in checked_folders:
            checked_folders[folder] = _unsafe_permissions(folder)
        unsafe = checked_folders[folder] or _unsafe_permissions(path)
        if unsafe:
            if strict_permissions:
                result.invalid.append(Invalid(relative, None, "",
                                              f"refused: {unsafe} (--strict-permissions)"))
                continue
            result.warnings.append(f"{relative}: {unsafe}; --strict-permissions refuses it")
        for index, document in _documents(path, relative, result):
            if isinstance(document, dict) and document.get("kind") == "Hosts":
                _read_hosts(document, relative, index, result)
                continue
            result.documents += 1
            if _check_document(document, relative, index, result):
                candidates.append((relative, index, document))
    for error in walk_errors:
        where = os.path.relpath(error.filename, root) if error.filename else directory
        result.invalid.append(Invalid(where, None, "", f"cannot read: {error.strerror}"))
    if result.documents == 0 and not result.invalid:
        result.problem = f"manifest directory {directory} holds no manifests"

    result.hosts.update(extra_hosts or {})
    _cross_check(candidates, result, disk_roots)
    return result


def _read_hosts(document: dict[str, Any], relative: str, index: int,
                result: LoadResult) -> None:
    """The hosts.yaml document: checked, then its names and URIs kept in `result.hosts`."""
    if relative != HOSTS_FILE:
        result.invalid.append(Invalid(relative, index, "kind", "a Hosts document belongs in "
                                      f"{HOSTS_FILE} at the root of the manifest tree"))
        return
    result.hosts_documents += 1
    if result.hosts_documents > 1:
        result.invalid.append(Invalid(relative, index, "kind",
                                      f"{HOSTS_FILE} holds more than one Hosts document"))
        return
    if _check_document(document, relative, index, result, kind="Hosts"):
        result.hosts.update(document["hosts"])


def _unsafe_permissions(path: Path) -> str | None:
    """Why users other than root and this process's could rewrite `path`, if they could."""
    try:
        info = path.stat()
    except OSError:
        return None  # reading it reports the problem
    what = f"{'folder' if stat.S_ISDIR(info.st_mode) else 'file'} {path}"
    if info.st_uid not in (0, os.geteuid()):
        return f"{what} is owned by uid {info.st_uid}"
    if info.st_mode & stat.S_IWOTH:
        return f"{what} is writable by everyone"
    if info.st_mode & stat.S_IWGRP:
        return f"{what} is writable by its group"
    return None


def _manifest_files(root: Path, errors: list[OSError]) -> Iterator[tuple[Path, Path, str]]:
    """(folder, file, file relative to root) of every manifest file, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        inside = os.path.relpath(dirpath, root)  # once per folder: pathlib is slow per file
        for name in sorted(filenames):
            if name.startswith(".") or _EDITOR_LEFTOVERS.search(name):
                continue
            if name.endswith((".yaml", ".yml")):
                yield folder, folder / name, name if inside == "." else f"{inside}/{name}"


_STR_TAG = "tag:yaml.org,2002:str"


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
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


def _load_all(text: str) -> Iterator[tuple[Any, int | None]]:
    """Like yaml.load_all with _StrictLoader: yield (document, nodes) per document.

    A document that is a plain tree (no anchors or aliases; only maps, lists, strings,
    ints, booleans and nulls; no duplicate or non-string keys) is built directly from
    its nodes, about twice as fast as PyYAML's constructor, and `nodes` is its size.
    Anything else, and any error, goes to PyYAML's constructor unchanged, with `nodes`
    None: the caller must still check its size.
    """
    loader = _StrictLoader(text)
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


def _documents(path: Path, relative: str, result: LoadResult) -> Iterator[tuple[int, Any]]:
    """Yield (index, document) for the non-empty documents of one file.

    A file that is not valid YAML is invalid as a whole: none of its documents
    are used, and the names already read from it are kept as invalid names.
    """
    try:
        try:
            info = os.stat(path)
        except OSError as exc:  # as Path.is_file() does: these mean "not a file"
            if exc.errno not in _NOT_A_FILE:
                raise
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(21, "not a regular file")
        if info.st_size > _MAX_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except OSError as exc:
        result.invalid.append(Invalid(relative, None, "", f"cannot read: {exc.strerror}"))
        return
    except (UnicodeDecodeError, ValueError) as exc:
        result.invalid.append(Invalid(relative, None, "", f"cannot read: {exc}"))
        return

    parsed: list[tuple[int, Any]] = []
    index = 0  # of the document being read, so a parse error names the right one
    try:
        for document, nodes in _load_all(text):
            if document is not None:
                parsed.append((index, document))  # first, so a too large one's name is kept
                if nodes is None:
                    _check_size(document)
                elif nodes > _MAX_NODES:  # a plain tree: its size is its number of nodes
                    raise _TooLarge(_TOO_LARGE)
            index += 1
    except yaml.YAMLError as exc:
        result.invalid.append(Invalid(relative, index, "", f"not valid YAML: {_yaml_reason(exc)}"))
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # PyYAML's constructors raise these on values such as 2024-02-30 or !!int ""
        result.invalid.append(Invalid(relative, index, "", "not valid YAML: cannot construct a "
                                      f"value: {' '.join(str(exc).split())}"))
    except (RecursionError, _TooLarge) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        result.invalid.append(Invalid(relative, index, "", f"not usable YAML: {reason}"))
    else:
        yield from parsed
        return
    for _, document in parsed:
        name = _name_of(document)
        if name:
            result.invalid_names.add(name)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(problem).split())  # a ReaderError's text spans two lines


class _TooLarge(Exception):
    pass


_TOO_LARGE = f"more than {_MAX_NODES} nodes once aliases are expanded"


def _check_size(document: Any) -> None:
    """Refuse documents whose aliases expand past a sane size."""
    budget = _MAX_NODES
    stack = [document]
    while stack:
        budget -= 1
        if budget < 0:
            raise _TooLarge(_TOO_LARGE)
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _name_of(document: Any) -> str | None:
    if isinstance(document, dict):
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if isinstance(name, str):
            return name
    return None


_GENERATED = Path(__file__).with_name("_fastschema.py")


@cache
def _fast_validator() -> Callable[[Any], Any]:
    """fastjsonschema's validator for the schema. Compiling it costs ~10 ms per process
    (it generates and compiles 80 kB of Python), so a copy generated ahead is kept in
    _fastschema.py and imported from its cached bytecode instead, but only while it was
    generated from this very schema file (it keeps the file's text); regenerate it with
    `python -c 'import controller.manifests as m; m.write_fast_validator()'`."""
    try:
        from . import _fastschema
    except ImportError:
        pass
    else:
        if getattr(_fastschema, "SCHEMA_TEXT", None) == _schema_text():
            generated: Callable[[Any], Any] = _fastschema.validate
            return generated
    import fastjsonschema

    validate: Callable[[Any], Any] = fastjsonschema.compile(schema())
    return validate


def _schema_text() -> str:
    schema_file = Path(__file__).with_name("schemas") / "virtualmachine.schema.json"
    return schema_file.read_text(encoding="utf-8")


def fast_validator_source() -> str:
    """The text of _fastschema.py: fastjsonschema's code for the schema, made independent
    of fastjsonschema itself (only pass or raise matters: any doubt goes to jsonschema)."""
    import fastjsonschema

    code = fastjsonschema.compile_to_code(schema())
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
    return (f'"""Generated from schemas/virtualmachine.schema.json by fastjsonschema '
            f'{fastjsonschema.VERSION}; do not edit.\n\nRegenerate with '
            f"`python -c 'import controller.manifests as m; m.write_fast_validator()'`; "
            f'controller/manifests.py\nuses it only while SCHEMA_TEXT is the schema '
            f'file\'s text."""\n# ruff: noqa\n# mypy: ignore-errors\n\n'
            f'SCHEMA_TEXT = {_schema_text()!r}\n\n{code.strip()}\n\n\n'
            f"validate = {main.group(1)}\n")


def write_fast_validator() -> None:
    _GENERATED.write_text(fast_validator_source(), encoding="utf-8")


def _fast_valid(document: Any) -> bool:
    """The compiled validator's verdict, about 10x faster than jsonschema's; trusted only
    when it accepts a document without floats (it counts 2.0 as an integer, and the
    schema has no number fields). Everything else goes to jsonschema, which also
    explains what is wrong."""
    try:
        _fast_validator()(document)
    except Exception:  # noqa: BLE001 - any doubt goes to the full validator
        return False
    return not _has_float(document)


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


def _check_document(document: Any, relative: str, index: int, result: LoadResult,
                    kind: str = "VirtualMachine") -> bool:
    """Schema-check one document; record why it is invalid and return False if so."""
    if kind == "VirtualMachine" and _fast_valid(document):
        return True
    import jsonschema

    try:
        error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(document))
    except RecursionError:
        path, reason = "", "nested too deeply"
    else:
        if error is None:
            return True
        path, reason = _error_path(error), _schema_reason(error)
    name = _name_of(document)
    if name:
        result.invalid_names.add(name)
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
        return (f"{_shown(error.instance)} is not a memory size (an integer of MiB, "
                "or e.g. '512MiB', '2GiB')")
    elif error.validator == "oneOf" and "interfaces" in error.path:
        return "an interface needs exactly one of network: or bridge:"
    elif error.validator in ("maxItems", "minItems") and isinstance(error.instance, list):
        bound = "at most" if error.validator == "maxItems" else "at least"
        return f"{len(error.instance)} items; {bound} {error.validator_value} allowed"
    else:
        message = error.message
        if len(message) > 300:  # jsonschema quotes the whole value first ("[...] is too
            # long"): quote it short, so that the reason at the end is not cut off
            message = message.replace(repr(error.instance), _shown(error.instance), 1)
    return message if len(message) <= 300 else message[:297] + "..."


def _shown(value: Any) -> str:
    """A value as an error message quotes it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _cross_check(
    candidates: list[tuple[str, int, dict[str, Any]]],
    result: LoadResult,
    disk_roots: Sequence[str],
) -> None:
    """Checks that span documents or need more than the schema: names, sizes, disks."""
    by_name: dict[str, list[tuple[str, int]]] = {}
    for relative, index, document in candidates:
        by_name.setdefault(document["metadata"]["name"], []).append((relative, index))
    roots = [os.path.realpath(root) for root in disk_roots]
    disk_owner: dict[str, tuple[str, str, int]] = {}
    specs: list[VMSpec] = []
    for relative, index, document in candidates:
        name = document["metadata"]["name"]
        places = by_name[name]
        if len(places) > 1 or name in result.invalid_names:
            others = ", ".join(f"{printable(f)}[{i}]" for f, i in places
                               if (f, i) != (relative, index))
            result.invalid.append(Invalid(
                relative, index, "metadata.name",
                f"name '{name}' is also defined in {others or 'an invalid document'}"))
            result.invalid_names.add(name)
            continue
        try:
            spec = _to_spec(document, relative, roots)
            if spec.host is not None and spec.host not in result.hosts:
                raise _FieldError("spec.host", f"host '{spec.host}' is not named in "
                                  f"{HOSTS_FILE} nor by --host NAME=URI")
        except _FieldError as exc:
            result.invalid.append(Invalid(relative, index, exc.path, exc.reason))
            result.invalid_names.add(name)
            continue
        clash = None
        for disk_index, disk in enumerate(spec.disks):
            owner = disk_owner.get(disk.source)
            if owner and owner[0] != name:
                clash = (disk_index, disk.source, owner)
                break
        if clash:
            disk_index, source, (other, other_file, other_index) = clash
            result.invalid.append(Invalid(
                relative, index, f"spec.disks[{disk_index}].source",
                f"{printable(source)} is already the disk of '{other}' "
                f"({printable(other_file)}[{other_index}])"))
            result.invalid_names.add(name)
            continue
        for disk in spec.disks:
            disk_owner[disk.source] = (name, relative, index)
        specs.append(spec)
    for spec in specs:
        result.specs[spec.name] = spec


def check_document(document: dict[str, Any], *,
                   disk_roots: Sequence[str] = DEFAULT_DISK_ROOTS) -> list[Invalid]:
    """Why one VirtualMachine document on its own is invalid (schema and field checks,
    with `disk_roots`), as `validate` says it; [] when it is valid. Used by `export`, so
    that it never writes a manifest that `validate` rejects."""
    result = LoadResult(directory="")
    document = copy.deepcopy(document)  # the fast validator fills in defaults in place
    if _check_document(document, "-", 0, result):
        _cross_check([("-", 0, document)], result, disk_roots)
    return result.invalid


class _FieldError(Exception):
    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _to_spec(document: dict[str, Any], relative: str, roots: list[str]) -> VMSpec:
    metadata = document["metadata"]
    spec = document.get("spec") or {}
    state = DesiredState(spec.get("state", "running"))
    memory_kib = current_kib = 0
    if "memory" in spec:
        memory_kib = _memory(spec, "memory")
        current_kib = _memory(spec, "currentMemory") if "currentMemory" in spec else memory_kib
        if current_kib > memory_kib:
            raise _FieldError("spec.currentMemory",
                              f"currentMemory {_shown(spec['currentMemory'])} is more than "
                              f"memory {_shown(spec['memory'])}")
    uuid = metadata.get("uuid")
    if uuid:
        compact = uuid.replace("-", "").lower()
        uuid = f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"
    return VMSpec(
        name=metadata["name"],
        source=relative,
        state=state,
        uuid=uuid,
        labels=tuple(sorted((metadata.get("labels") or {}).items())),
        memory_kib=memory_kib,
        current_memory_kib=current_kib,
        vcpus=spec.get("vcpus", 0),
        type=spec.get("type", "kvm"),
        arch=spec.get("arch"),
        machine=spec.get("machine"),
        autostart=spec.get("autostart", False),
        update_policy=UpdatePolicy(spec.get("updatePolicy", "restart")),
        stop_timeout=spec.get("stopTimeout", 60),
        adopt=spec.get("adopt", False),
        suspend=spec.get("suspend", False),
        disks=_disks(spec.get("disks") or [], roots),
        interfaces=tuple(
            Interface(network=i.get("network"), bridge=i.get("bridge"),
                      mac=i["mac"].lower() if i.get("mac") else None,
                      model=i.get("model", "virtio"))
            for i in spec.get("interfaces") or []
        ),
        host=spec.get("host"),
        move_strategy=MoveStrategy(spec.get("moveStrategy", "cold")),
    )


def _memory(spec: dict[str, Any], key: str) -> int:
    try:
        kib = parse_memory_kib(spec[key])
    except ValueError:  # past the schema, only for numbers of thousands of digits
        raise _FieldError(f"spec.{key}", f"{_shown(spec[key])} is not a memory size") from None
    if kib > 2**40:
        raise _FieldError(f"spec.{key}", f"{_shown(spec[key])} is larger than 1 PiB")
    return kib


_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


def _disks(items: list[dict[str, Any]], roots: list[str]) -> tuple[Disk, ...]:
    used: set[str] = {item["target"] for item in items if "target" in item}
    next_index: dict[str, int] = {}
    disks: list[Disk] = []
    for position, item in enumerate(items):
        path = f"spec.disks[{position}]"
        source = _confined_source(item["source"], roots, f"{path}.source")
        if any(disk.source == source for disk in disks):
            raise _FieldError(f"{path}.source", f"{item['source']} is listed twice")
        bus = item.get("bus", "virtio")
        if bus in ("sata", "ide") and item.get("readonly"):
            raise _FieldError(f"{path}.readonly", f"QEMU has no read-only {bus.upper()} "
                                                  "disks; use bus: virtio or scsi")
        target = item.get("target")
        if target is None:
            prefix = _BUS_PREFIX[bus]
            while True:
                index = next_index.get(prefix, 0)
                next_index[prefix] = index + 1
                target = disk_target_name(prefix, index)
                if target not in used:
                    break
            used.add(target)
        elif any(other.get("target") == target for other in items[:position]):
            raise _FieldError(f"{path}.target", f"target {target} is used by two disks")
        disks.append(Disk(source=source, target=target, format=item.get("format", "qcow2"),
                          bus=bus, readonly=item.get("readonly", False)))
    return tuple(disks)


def _confined_source(source: str, roots: list[str], path: str) -> str:
    resolved = os.path.realpath(source)
    if not any(resolved == root or resolved.startswith(root.rstrip("/") + "/") for root in roots):
        shown = source if resolved == source else f"{source} (resolves to {printable(resolved)})"
        raise _FieldError(path, f"{shown} is outside the allowed disk roots "
                                f"({', '.join(roots)}); see --disk-root")
    if resolved in roots:
        raise _FieldError(path, f"{source} is a disk root, not a disk image")
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        return resolved  # not created yet: libvirt will say so when the domain starts
    except OSError as exc:  # a symlink loop, a file used as a folder: never a disk image
        raise _FieldError(path, f"{source} is not usable: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise _FieldError(path, f"{source} is not a regular file")
    return resolved
