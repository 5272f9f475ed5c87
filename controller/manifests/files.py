"""The manifest files of a directory tree, and the documents in each.

Which files count (`*.yaml`/`*.yml`, not hidden, not editor leftovers), who may
write them (like sshd's StrictModes), and reading one file into its documents:
a file that is not valid YAML is invalid as a whole, and the names already read
from it are kept as invalid names.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..model import VMSpec
from .result import Invalid, LoadResult
from .yamlread import MAX_NODES, TOO_LARGE, TooLarge, check_size, load_all, yaml_reason

EDITOR_LEFTOVERS = re.compile(r"(~$|^\.#|\.swp$|\.swx$|\.tmp$|^4913$)")
_MAX_FILE_BYTES = 16 * 1024 * 1024
_NOT_A_FILE = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)

#: The documents of each file's text that parsed as plain trees (yamlread.load_all), by
#: the text itself, read afresh every time: the service reloads the same files at every
#: resync, and an edited file is another text, parsed anew. Copies leave it (the
#: validator fills in defaults in place) until the loader has accepted a document: from
#: then on its Memo's checked document, which nobody changes. Bounded: a full cache
#: starts over; large texts are not kept.
_PARSED: dict[str, tuple[tuple[int, Any, Memo], ...]] = {}
PARSED_MAX = 4096
PARSED_TEXT_MAX = 64 * 1024


class Memo:
    """What the loader worked out once from one document of a cached text, for the next
    load of the same text: the document as the schema accepted it (its defaults filled
    in; handed out as it is, so nobody may change it), and the spec it made, by whatever
    else that spec depended on (the file's name, the disk roots)."""

    __slots__ = ("checked", "specs")

    def __init__(self) -> None:
        self.checked: dict[str, Any] | None = None
        self.specs: dict[tuple[str, ...], VMSpec] = {}  # by (file, *disk roots)


def _copy(value: Any) -> Any:
    """A copy of a plain tree (dicts, lists and immutable scalars)."""
    if type(value) is dict:
        return {key: _copy(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy(item) for item in value]
    return value


def stat_of(path: str | Path) -> os.stat_result | OSError:
    """os.stat(path), or the error it raised: read once per file, for both the
    permission check and the reading (a stat costs about as much as reading the file)."""
    try:
        return os.stat(path)
    except OSError as exc:
        return exc


def unsafe_permissions(path: str | Path,
                       info: os.stat_result | OSError | None = None) -> str | None:
    """Why users other than root and this process's could rewrite `path`, if they could.
    `info`: its stat_of, when the caller has it."""
    if info is None:
        info = stat_of(path)
    if isinstance(info, OSError):
        return None  # reading it reports the problem
    what = f"{'folder' if stat.S_ISDIR(info.st_mode) else 'file'} {path}"
    if info.st_uid not in (0, os.geteuid()):
        return f"{what} is owned by uid {info.st_uid}"
    if info.st_mode & stat.S_IWOTH:
        return f"{what} is writable by everyone"
    if info.st_mode & stat.S_IWGRP:
        return f"{what} is writable by its group"
    return None


def manifest_files(root: Path, errors: list[OSError]) -> Iterator[tuple[str, str, str]]:
    """(folder, file, file relative to root) of every manifest file, in a stable order.
    Paths as str (os.walk's own): a Path per file costs more than reading the file."""
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        inside = os.path.relpath(dirpath, root)  # once per folder
        for name in sorted(filenames):
            if name.startswith(".") or EDITOR_LEFTOVERS.search(name):
                continue
            if name.endswith((".yaml", ".yml")):
                yield (dirpath, os.path.join(dirpath, name),
                       name if inside == "." else f"{inside}/{name}")


def documents(path: str | Path, relative: str, result: LoadResult,
              info: os.stat_result | OSError | None = None,
              ) -> Iterator[tuple[int, Any, bool, Memo | None]]:
    """Yield (index, document, plain, memo) for the non-empty documents of one file
    (`info`: its stat_of, when the caller has it). `plain`: built from the nodes alone
    (see yamlread.load_all), so it holds no float. `memo`: the document's Memo when its
    text is cached (None otherwise); once `memo.checked` is set, that is the document.

    A file that is not valid YAML is invalid as a whole: none of its documents
    are used, and the names already read from it are kept as invalid names.
    """
    try:
        if info is None:
            info = stat_of(path)
        if isinstance(info, OSError):  # as Path.is_file() does: these mean "not a file"
            if info.errno not in _NOT_A_FILE:
                raise info
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(21, "not a regular file")  # noqa: TRY301 - reported below
        if info.st_size > _MAX_FILE_BYTES:
            raise ValueError(f"larger than {_MAX_FILE_BYTES} bytes")  # noqa: TRY301
        text = _read(path).decode("utf-8")
    except OSError as exc:
        result.invalid.append(Invalid(relative, None, "", f"cannot read: {exc.strerror}"))
        return
    except (UnicodeDecodeError, ValueError) as exc:
        result.invalid.append(Invalid(relative, None, "", f"cannot read: {exc}"))
        return

    cached = _PARSED.get(text)
    if cached is not None:
        for index, document, memo in cached:
            checked = memo.checked
            yield index, _copy(document) if checked is None else checked, True, memo
        return
    parsed: list[tuple[int, Any, bool]] = []
    index = 0  # of the document being read, so a parse error names the right one
    try:
        for document, nodes in load_all(text):
            if document is not None:
                # first, so a too large one's name is kept
                parsed.append((index, document, nodes is not None))
                if nodes is None:
                    check_size(document)
                elif nodes > MAX_NODES:  # a plain tree: its size is its number of nodes
                    raise TooLarge(TOO_LARGE)  # noqa: TRY301 - reported below
            index += 1
    except yaml.YAMLError as exc:
        result.invalid.append(Invalid(relative, index, "", f"not valid YAML: {yaml_reason(exc)}"))
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # PyYAML's constructors raise these on values such as 2024-02-30 or !!int ""
        result.invalid.append(Invalid(relative, index, "", "not valid YAML: cannot construct a "
                                      f"value: {' '.join(str(exc).split())}"))
    except (RecursionError, TooLarge) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        result.invalid.append(Invalid(relative, index, "", f"not usable YAML: {reason}"))
    else:
        if len(text) <= PARSED_TEXT_MAX and all(plain for _, _, plain in parsed):
            if len(_PARSED) >= PARSED_MAX:
                _PARSED.clear()
            memos = [Memo() for _ in parsed]
            _PARSED[text] = tuple((index, _copy(document), memo)
                                  for (index, document, _), memo in zip(parsed, memos,
                                                                        strict=True))
            for (index, document, plain), memo in zip(parsed, memos, strict=True):
                yield index, document, plain, memo
            return
        for index, document, plain in parsed:
            yield index, document, plain, None
        return
    for _, document, _ in parsed:
        name = name_of(document)
        if name:
            result.refuse_name(name, relative)


def _read(path: str | Path) -> bytes:
    """The file's bytes, with two system calls for a small file (open() and its buffered
    reader cost about as much again, per file and per resync)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def name_of(document: Any) -> str | None:
    if isinstance(document, dict):
        metadata = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if isinstance(name, str):
            return name
    return None
