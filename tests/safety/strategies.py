"""Hypothesis strategies for bad input: manifests near the schema, YAML junk, hostile files.

A generated manifest directory is a list of `Entry` values, written by `write_entries`.
Documents start from valid manifests (`valid_document`) and are mutated (`mutated_document`)
or corrupted in ways that must always make them invalid (`broken_manifest`).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: The disk root of fuzzed manifests: it need not exist (images that do not exist yet are fine).
DISK_ROOT = "/srv/reconcile-fuzz/images"

#: Strings that have broken parsers, XML builders, shells and terminals before.
NASTY_STRINGS = [
    "", " ", "\x00", "a\x00b", "web\n", "\nweb", "web\r", "\t", "\x1b[31mred\x1b[0m", "\u202eevil",
    "<domain/>", "</name><name>x", "a]]>b", "<![CDATA[x]]>", "&amp;", "&lt;", "&#0;", "'", '"',
    "../../etc/shadow", "/var/lib/libvirt/images/../../etc/shadow", "/dev/null", "/dev/sda",
    "/", "//", "/var/lib/libvirt/images", "/var/lib/libvirt/images/", "~root", "$(touch x)",
    "`id`", "%s%n", "{{x}}", "${HOME}", "\ud7ff", "\ufeff", "\ufffd", "\U0001f600", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "ünïcödé", "名前", "ǅ", "NaN", "-0", "1e400", "0x40", "64.0", "-64", "64 PiB", "64 MiBs",
    "9" * 5000, "yes", "no", "on", "null", "~", "true", "2024-01-01", "!!binary", "*alias",
    "&anchor", "- item", "key: value", "---", "...", "#", "?",
]

hostile_scalars = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 1, 4096, 4097, 86401, 2**31, 2**32, 2**63, 2**64, -(2**63),
                     10**30, 17179869185, 2**40 + 1]),
    st.floats(),  # NaN and infinities included
    st.booleans(),
    st.none(),
    st.dates(),
    st.text(max_size=40),
    st.sampled_from(NASTY_STRINGS),
    st.builds(lambda ch, n: ch * n, st.characters(), st.integers(1000, 20_000)),
)

hostile_values: st.SearchStrategy[Any] = st.recursive(
    hostile_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.booleans(), st.none()),
                        inner, max_size=4),
    ),
    max_leaves=12,
)

names = st.from_regex(NAME_RE, fullmatch=True)
memory_sizes = st.one_of(
    st.integers(1, 65536),
    st.sampled_from(["64MiB", "1GiB", " 512 M ", "2048KiB", "1 GB", "65536K", "1T", "64"]),
)


@st.composite
def valid_document(draw: st.DrawFn, name: str | None = None, disk_root: str = DISK_ROOT,
                   ) -> dict[str, Any]:
    """A manifest the schema and every cross-check accept (names aside: callers pick them)."""
    name = name if name is not None else draw(names)
    state = draw(st.sampled_from(["running", "stopped", "absent", None]))
    spec: dict[str, Any] = {}
    if state is not None:
        spec["state"] = state
    if state != "absent" or draw(st.booleans()):
        spec["memory"] = draw(memory_sizes)
        spec["vcpus"] = draw(st.integers(1, 8))
    optional: dict[str, st.SearchStrategy[Any]] = {
        "type": st.sampled_from(["kvm", "qemu"]),
        "autostart": st.booleans(),
        "updatePolicy": st.sampled_from(["restart", "next-boot"]),
        "stopTimeout": st.integers(0, 86400),
        "adopt": st.booleans(),
        "suspend": st.booleans(),
        "arch": st.sampled_from(["x86_64", "i686", "aarch64"]),
        "machine": st.sampled_from(["pc", "q35", "pc-i440fx-7.2"]),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            spec[key] = draw(strategy)
    if draw(st.booleans()):
        count = draw(st.integers(1, 3))
        spec["disks"] = [
            {"source": f"{disk_root}/{name}-{i}.{draw(st.sampled_from(['qcow2', 'img']))}",
             **({"format": draw(st.sampled_from(["qcow2", "raw"]))} if draw(st.booleans())
                else {}),
             **({"bus": draw(st.sampled_from(["virtio", "scsi"]))} if draw(st.booleans())
                else {})}
            for i in range(count)
        ]
    if draw(st.booleans()):
        spec["interfaces"] = [
            draw(st.one_of(st.just({"network": "default"}), st.just({"bridge": "br0"}),
                           st.just({"network": "default", "mac": "52:54:00:12:34:56"})))
        ]
    metadata: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        metadata["uuid"] = str(draw(st.uuids()))
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.text(max_size=20), st.text(max_size=40),
                                                  max_size=3))
    document: dict[str, Any] = {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
                                "metadata": metadata}
    with_empty_spec: bool = draw(st.booleans())
    if spec or with_empty_spec:
        document["spec"] = spec
    return document


def _paths(value: Any, prefix: tuple[Any, ...] = (),
           seen: frozenset[int] = frozenset()) -> list[tuple[Any, ...]]:
    """Every key/index path inside a document, the document itself first (a cycle once)."""
    found = [prefix]
    if id(value) in seen or len(prefix) > 80:
        return found
    seen = seen | {id(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key), seen)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index), seen)
    return found


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


@st.composite
def mutated_document(draw: st.DrawFn, disk_root: str = DISK_ROOT) -> Any:
    """A valid document with one to four random mutations: it may or may not stay valid."""
    document: Any = draw(valid_document(disk_root=disk_root))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        target = _get(document, path)
        operation = draw(st.sampled_from(
            ["replace", "replace", "delete", "extra-key", "wrap-list", "wrap-map", "nest",
             "duplicate-list", "alias"]))
        if operation == "replace":
            new: Any = draw(hostile_values)
        elif operation == "delete" and path:
            del _get(document, path[:-1])[path[-1]]
            continue
        elif operation == "extra-key" and isinstance(target, dict):
            target[draw(st.one_of(st.text(max_size=10), st.integers(), st.sampled_from(
                ["apiversion", "Kind", "spec ", "métadata", "<x>"])))] = draw(hostile_values)
            continue
        elif operation == "wrap-list":
            new = [copy.deepcopy(target)]
        elif operation == "wrap-map":
            new = {"value": copy.deepcopy(target)}
        elif operation == "nest":
            new = copy.deepcopy(target)
            for _ in range(draw(st.integers(2, 60))):
                new = [new]
        elif operation == "alias":
            # the same object in two places: dumped as an anchor and an alias (a cycle when
            # it is an ancestor of the place it goes to)
            new = _get(document, draw(st.sampled_from(paths)))
        elif operation == "duplicate-list" and isinstance(target, list):
            target.extend(copy.deepcopy(target) * draw(st.integers(1, 40)))
            continue
        else:
            new = draw(hostile_values)
        if path:
            _get(document, path[:-1])[path[-1]] = new
        else:
            document = new
    return document


def dump(document: Any, *, flow: bool = False, unicode: bool = True) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=flow,
                          allow_unicode=unicode, width=10_000)


@st.composite
def rendered_document(draw: st.DrawFn, document: st.SearchStrategy[Any]) -> str:
    return dump(draw(document), flow=draw(st.booleans()), unicode=draw(st.booleans()))


YAML_TOKENS = [
    ":", ": ", "- ", "-", "---\n", "...\n", "\n", "  ", "\t", "{", "}", "[", "]", ",", "? ",
    "&a ", "*a", "&b ", "*b", "*undefined", "!!str ", "!!int ", "!!map ", "!!binary ",
    "!!python/object/apply:os.system ", "!custom ", "%YAML 1.2\n", "%TAG ! tag:x,2000:\n",
    "'", '"', "|\n", ">\n", "#", "@", "`", "\\", "\x00", "\x85", "\ufeff", "\ud800", "\U0001f600",
    "apiVersion", "reconcile/v1", "kind", "VirtualMachine", "metadata", "name", "spec",
    "memory", "vcpus", "disks", "source", "state", "<<", "=", "~", "null", "0x1F", "1e3",
    ".inf", "-.nan", "2001-12-14t21:59:43.10-05:00", "é", "名",
]

yaml_like_text = st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=6)),
                          max_size=60).map("".join)


def billion_laughs(name: str, depth: int = 12) -> str:
    lines = ["apiVersion: reconcile/v1", "kind: VirtualMachine",
             f"metadata: {{name: {name}}}", "spec:", "  memory: 64", "  vcpus: 1",
             'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def deep_text(depth: int, style: str) -> str:
    """YAML nested `depth` levels deep; block styles are capped (their size is quadratic)."""
    if style != "flow":
        depth = min(depth, 400)
    if style == "flow":
        return "[" * depth + "]" * depth + "\n"
    if style == "map":
        return "".join(f"{' ' * i}k{i}:\n" for i in range(depth)) + f"{' ' * depth}x\n"
    return "".join(f"{'  ' * i}- \n" for i in range(depth)) + f"{'  ' * depth}x\n"


def multi(documents: list[str]) -> str:
    return "".join(f"---\n{text}" for text in documents)


@dataclass(frozen=True)
class Entry:
    """One thing in a fuzzed manifest directory."""

    name: str
    kind: str  # text | bytes | dir | dangling | fifo
    content: str | bytes = ""


#: File names: plain, nested, unicode, with spaces, control characters and XML metacharacters.
filenames = st.one_of(
    st.sampled_from(["a.yaml", "b.yml", "sub/c.yaml", "sub/deeper/d.yaml", "x y.yaml",
                     "<x>&.yaml", "名前.yaml", "new\nline.yaml", "esc\x1b[2J.yaml", "-.yaml",
                     ".hidden.yaml", "e.yaml~", "f.yaml.swp", "4913", "notes.txt"]),
    st.text(st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]),
            min_size=1, max_size=30).map(lambda s: s + ".yaml"),
)

_TEXT_BREAKS = [
    "kind: VirtualMachine\n",  # a duplicate top-level key
    "\tindented: with a tab\n",
    'x: "unterminated\n',
    "x: !!python/object/apply:os.system ['true']\n",
    "x: *undefined-alias\n",
    "x: [1, 2\n",
    "x: {a: 1, a: 2}\n",
    "? [a, b]\n: complex key\n",
    "x: \x00\n",
    "x: &a [*a]\n",
]

file_contents = st.one_of(
    rendered_document(mutated_document()),
    st.builds(str.__add__, rendered_document(valid_document()),
              st.sampled_from(_TEXT_BREAKS)),  # duplicate keys, bad aliases, tags, cycles
    rendered_document(valid_document()),
    st.lists(st.one_of(rendered_document(mutated_document()),
                       rendered_document(valid_document()), st.just(""), yaml_like_text),
             min_size=2, max_size=4).map(multi),
    yaml_like_text,
    st.text(max_size=200),
    st.sampled_from(["", "\n", "---\n", "---\n---\n...\n", "# only a comment\n", "~\n", "null\n",
                     "[]\n", "{}\n", "0\n", "'a'\n"]),
    st.builds(billion_laughs, names, st.integers(3, 12)),
    st.builds(deep_text, st.integers(10, 3000), st.sampled_from(["flow", "map", "list"])),
)


@st.composite
def entries(draw: st.DrawFn, *, min_size: int = 1, max_size: int = 6) -> list[Entry]:
    """A manifest directory's worth of files, including things that are not files."""
    found: dict[str, Entry] = {}
    for _ in range(draw(st.integers(min_size, max_size))):
        name = draw(filenames)
        if len(os.fsencode(name)) > 200 or any(
                part in (".", "..") or not part for part in name.split("/")):
            continue
        kind = draw(st.sampled_from(["text"] * 8 + ["bytes", "bytes", "dir", "dangling", "fifo"]))
        if kind == "text":
            found[name] = Entry(name, kind, draw(file_contents))
        elif kind == "bytes":
            found[name] = Entry(name, kind, draw(st.binary(max_size=300)))
        else:
            found[name] = Entry(name, kind)
    return list(found.values())


def write_entries(directory: Path, items: list[Entry]) -> None:
    """Write entries under `directory`; an entry that clashes with an earlier one is skipped."""
    for entry in items:
        path = directory / entry.name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if entry.kind == "text":
                assert isinstance(entry.content, str)
                path.write_bytes(entry.content.encode("utf-8", "surrogatepass"))
            elif entry.kind == "bytes":
                assert isinstance(entry.content, bytes)
                path.write_bytes(entry.content)
            elif entry.kind == "dir":
                path.mkdir()
                (path / "inside.yaml").write_text("apiVersion: [\n")
            elif entry.kind == "dangling":
                path.symlink_to(directory / "does-not-exist.yaml")
            elif entry.kind == "fifo":
                os.mkfifo(path)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue  # "sub" both a file and a folder: keep the first one


# --- corruptions that must always make a VM's manifest invalid -----------------------------

_KNOWN_KEYS = {
    (): {"apiVersion", "kind", "metadata", "spec"},
    ("metadata",): {"name", "uuid", "labels"},
    ("spec",): {"state", "memory", "currentMemory", "vcpus", "type", "arch", "machine",
                "autostart", "updatePolicy", "stopTimeout", "adopt", "suspend", "disks",
                "interfaces"},
}
_BAD_FIELDS: dict[tuple[str, ...], list[Any]] = {
    ("apiVersion",): ["reconcile/v2", "v1", "", None, 1, ["reconcile/v1"]],
    ("kind",): ["VM", "virtualmachine", "", None, {"a": 1}],
    ("metadata",): [None, [], "web-1", 7],
    ("metadata", "name"): ["", "-lead", ".x", "a<b", "a>b", "a&b", "a'b", 'a"b', "a]]>b",
                           "web\n", "a b", "ünï", "../x", "x/y", "a" * 65, "\x00", 5, None,
                           True, ["x"], {"x": 1}],
    ("metadata", "uuid"): ["not-a-uuid", "", 12, "00000000-0000-0000-0000-00000000000g"],
    ("metadata", "labels"): [{1: "x"}, {"k": 5}, {"k": None}, {"k": ["v"]}, "labels", [],
                             {"k" * 254: "v"}, {"k": "v" * 1025}],
    ("spec",): [[], "spec", 0, True],
    ("spec", "state"): ["Running", "gone", "", None, 1, ["running"]],
    ("spec", "memory"): [0, -5, True, None, [], {}, "lots", "64 PiB", "64 MiBs", 64.5, 64.0,
                         2**70, 17179869185, "99999999999999 TiB", "-64", "0x40", "9" * 5000],
    ("spec", "vcpus"): [0, -1, 4097, 2**64, "2", 2.0, True, None, [], {}],
    ("spec", "type"): ["xen", "KVM", "", None],
    ("spec", "stopTimeout"): [-1, 86401, "60", 1.5, None],
    ("spec", "updatePolicy"): ["never", "", None],
    ("spec", "autostart"): ["yes please", 1, None],
    ("spec", "disks"): [[{"source": "/etc/shadow"}],
                        [{"source": "/var/lib/libvirt/images/../../etc/shadow"}],
                        [{"source": "/dev/null"}], [{"source": "relative.img"}],
                        [{"source": f"{DISK_ROOT}/a.img", "bus": "ide"}],
                        [{"format": "qcow2"}], {"source": f"{DISK_ROOT}/a.img"}, "disk",
                        [{"source": f"{DISK_ROOT}/a\nb.img"}]],
    ("spec", "interfaces"): [[{"network": "default", "bridge": "br0"}], [{}],
                             [{"network": "default", "mac": "52:54:00:zz:00:00"}],
                             [{"network": "<net/>"}], {"network": "default"}],
}


@st.composite
def broken_manifest(draw: st.DrawFn, document: dict[str, Any], filename: str) -> Entry:
    """The file `filename` holding `document`, corrupted so that it can never be valid."""
    how = draw(st.sampled_from(["field", "field", "field", "extra-key", "missing-key",
                                "text", "text", "laughs", "deep", "binary", "directory",
                                "second-document", "nested-spec"]))
    text = dump(document, flow=draw(st.booleans()))
    if how == "field":
        path = draw(st.sampled_from(sorted(_BAD_FIELDS)))
        broken = copy.deepcopy(document)
        _get(broken, path[:-1])[path[-1]] = draw(st.sampled_from(_BAD_FIELDS[path]))
        return Entry(filename, "text", dump(broken, flow=draw(st.booleans())))
    if how == "extra-key":
        where = draw(st.sampled_from(sorted(_KNOWN_KEYS)))
        key = draw(st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(
            ["apiversion", "Kind", "spec ", "métadata", "<x>", "memory", "name", "disks"])))
        if key in _KNOWN_KEYS[where]:
            key = f"{key}-extra"
        broken = copy.deepcopy(document)
        _get(broken, where)[key] = draw(hostile_values)
        return Entry(filename, "text", dump(broken))
    if how == "missing-key":
        path = draw(st.sampled_from([("apiVersion",), ("kind",), ("metadata",),
                                     ("metadata", "name"), ("spec", "memory"),
                                     ("spec", "vcpus")]))
        broken = copy.deepcopy(document)
        del _get(broken, path[:-1])[path[-1]]
        return Entry(filename, "text", dump(broken))
    if how == "text":
        return Entry(filename, "text", text + draw(st.sampled_from(_TEXT_BREAKS)))
    if how == "laughs":
        return Entry(filename, "text", billion_laughs(document["metadata"]["name"]))
    if how == "deep":
        nested = deep_text(draw(st.integers(200, 3000)), "flow").strip()
        return Entry(filename, "text", text + f"deep: {nested}\n")
    if how == "binary":
        junk = draw(st.binary(min_size=1, max_size=200))
        return Entry(filename, "bytes", b"\xff" + junk + text.encode())
    if how == "directory":
        return Entry(filename, "dir")
    if how == "second-document":
        second = "apiVersion: reconcile/v1\n" + draw(st.sampled_from(_TEXT_BREAKS))
        return Entry(filename, "text", multi([text, second]))
    broken = copy.deepcopy(document)
    broken["spec"] = {"spec": broken.get("spec")}
    return Entry(filename, "text", dump(broken))
