"""The no-op proof of `reconcile --once`: a pass that planned nothing is a pure function
of what it read, so while all of that reads the same, its output can be replayed.

After a `--once` pass that changed nothing, planned nothing, warned about nothing and
exited 0, `proof_record.py` writes a proof: the digests of everything the pass read,
each read before and after the pass and found equal, and the pass's exact output. The
digests cover the manifest tree (every folder's and file's name, owner and mode, and the
bytes of every `*.yaml`/`*.yml` file: `tree_digest`), the disk paths the manifests name
and the disk roots, resolved as the loader resolves them (`paths_digest`), and the host
(`virt/fingerprint.py`: the listings, every domain's definitions and state, and every
network's and storage pool's name, state and saved definition). The next
`reconcile --once` with the same command line, environment, working folder, terminals
and installed code (`process_key`) reads all of it afresh here, and when every digest is
equal and no other run holds a VM's lock, prints the recorded output and exits 0 without
importing the loader, the planner or the reconciler (`replay`). Anything different,
unreadable or corrupt: the normal pass, exactly as without a proof.

A proof is recorded only for passes whose every input the digests cover, so that a
replay can never be stale (a missed replay only costs time): one host, VirtualMachine
documents only (no Image, Network, StoragePool, hosts.yaml), no volume or image disks,
cloud-init seeds, machine or CPU model names or kernels, nothing invalid or warned
about, every VM unchanged (or restart-pending) with no steps, no orphan pruned or
refused, no guest readiness in the output (no --wait; with -o json, no running VM),
exit 0. `proof_record.py`'s docstring is the full list; anything else is never
recorded.

Proofs live in `<state dir>/noop-proofs/<key>.json` (0600, replaced atomically; the
newest `MAX_PROOFS` are kept). `--no-proof` or `RECONCILE_NO_PROOF=1` turns them off.

Called by `controller.entry` (`replay`) and by `controller.proof_record` (the rest).
Standard library only, and no dataclasses: the fast path's imports are its cost.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
from _blake2 import blake2b  # hashlib's own, without importing OpenSSL's (~12 M instructions)
from collections.abc import Iterable, Sequence
from typing import Any

from . import __version__
from .statedir import default_state_dir

#: Bump when what a proof holds or how a digest is computed changes.
FORMAT = 1
FOLDER = "noop-proofs"
MAX_PROOFS = 64
DISABLE_ENV = "RECONCILE_NO_PROOF"
#: The environment a pass may depend on (paths, libvirt, locale, colour, logging).
ENV_PREFIXES = ("RECONCILE_", "LIBVIRT_", "VIR_", "XDG_", "PYTHON", "LC_")
ENV_NAMES = frozenset({"HOME", "USER", "LANG", "TERM", "NO_COLOR", "JOURNAL_STREAM", "TZ"})
_MAX_FILE_BYTES = 16 * 1024 * 1024  # the loader refuses larger manifest files
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_process_key: str | None = None  # this process's, once `replay` computed it


class Proof:
    """What one proof file holds (a plain class: a dataclass costs the fast path more
    to define than to check)."""

    __slots__ = ("host", "key", "locks", "manifests", "named", "output", "paths", "readonly",
                 "roots", "sources", "tree", "uri")

    def __init__(self, *, key: str, manifests: str, tree: str, sources: Sequence[str],
                 roots: Sequence[str], paths: str, uri: str | None, readonly: bool,
                 named: Sequence[str], locks: Sequence[str], host: str, output: str):
        self.key = key
        self.manifests = manifests  # the manifest directory, as the pass was given it
        self.tree = tree  # tree_digest(manifests)
        self.sources = list(sources)  # the disk paths the manifests name
        self.roots = list(roots)  # --disk-root
        self.paths = paths  # paths_digest(sources, roots)
        self.uri = uri  # -c, None: libvirt's default
        self.readonly = readonly  # --dry-run: a read-only connection
        self.named = list(named)  # the VMs the manifests define
        self.locks = list(locks)  # their lock files ([] in a dry run, which takes none)
        self.host = host  # virt.fingerprint.read_host(uri, readonly, named)
        self.output = output  # stdout, without the final newline

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **{name: getattr(self, name) for name in self.__slots__}}

    @classmethod
    def from_json(cls, data: Any) -> Proof | None:
        """The proof in `data`, or None when it is not one of this format."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        strings = ("key", "manifests", "tree", "paths", "host", "output")
        lists = ("sources", "roots", "named", "locks")
        if not all(isinstance(data.get(name), str) for name in strings):
            return None
        if not all(isinstance(data.get(name), list)
                   and all(isinstance(item, str) for item in data[name]) for name in lists):
            return None
        if not (data.get("uri") is None or isinstance(data.get("uri"), str)) or \
                not isinstance(data.get("readonly"), bool):
            return None
        return cls(**{name: data[name] for name in cls.__slots__})


# --- the fast path ------------------------------------------------------------------------

def replay(argv: Sequence[str]) -> int | None:
    """`reconcile ARGV` from its proof: the recorded output printed and 0 returned, when
    every input reads as recorded; None otherwise (run the command normally)."""
    global _process_key
    if "--once" not in argv or "--no-proof" in argv or os.environ.get(DISABLE_ENV):
        return None
    try:
        key = _process_key = process_key(argv)
        proof = read_proof(proof_path(state_dir_of(argv), key))
        if (proof is None or proof.key != key or tree_digest(proof.manifests) != proof.tree
                or paths_digest(proof.sources, proof.roots) != proof.paths
                or locks_held(proof.locks)):
            return None
        from .virt.fingerprint import read_host

        if read_host(proof.uri, readonly=proof.readonly, named=proof.named) != proof.host:
            return None
    except Exception:  # noqa: BLE001 - a proof that cannot be checked is no proof
        return None
    sys.stdout.write(proof.output + "\n")
    sys.stdout.flush()
    return 0


def recorded_key() -> str | None:
    """This process's key, if it started through `replay` (proof_record writes only then:
    a process started otherwise, such as a test calling the CLI, has no key to keep)."""
    return _process_key


def forget_key() -> None:
    """This process's command is done (`controller.entry`): no later pass records."""
    global _process_key
    _process_key = None


# --- what a proof is keyed on ------------------------------------------------------------

def process_key(argv: Sequence[str]) -> str:
    """Everything of this process that a pass's output may depend on and the fingerprints
    do not read: the command line, working folder, ids, environment, terminals, the
    interpreter, and the installed code (ours by file sizes and times, the rest by the
    times of the folders on sys.path, which installing or upgrading a package changes)."""
    out, err = sys.stdout, sys.stderr
    parts = {
        "format": FORMAT, "version": __version__, "code": code_digest(PACKAGE_DIR),
        "python": [sys.version, sys.executable, sys.prefix], "path": path_stamps(sys.path),
        "argv": list(argv), "cwd": os.getcwd(),
        "ids": [os.geteuid(), os.getegid(), sorted(os.getgroups())],
        "env": sorted((name, value) for name, value in os.environ.items()
                      if name.startswith(ENV_PREFIXES) or name in ENV_NAMES),
        "tty": [out.isatty(), err.isatty()], "encoding": [out.encoding, out.errors],
    }
    text = json.dumps(parts, sort_keys=True, ensure_ascii=True)
    return blake2b(text.encode("ascii"), digest_size=20).hexdigest()


def code_digest(directory: str) -> str:
    """Every file of the package (not its bytecode caches) by name, size and mtime."""
    entries: list[str] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as found:
            for entry in sorted(found, key=lambda entry: entry.name):
                if entry.name == "__pycache__":
                    continue
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, f"{prefix}{entry.name}/")
                else:
                    info = entry.stat()
                    entries.append(f"{prefix}{entry.name} {info.st_size} {info.st_mtime_ns}")

    walk(directory, "")
    return blake2b("\n".join(entries).encode("utf-8", "surrogateescape"),
                   digest_size=20).hexdigest()


def path_stamps(paths: Iterable[str]) -> list[list[object]]:
    stamps: list[list[object]] = []
    for path in paths:
        try:
            info = os.stat(path or ".")
        except OSError:
            stamps.append([path, None])
        else:
            stamps.append([path, info.st_mtime_ns, info.st_ino])
    return stamps


# --- where proofs live -------------------------------------------------------------------

def state_dir_of(argv: Sequence[str]) -> str:
    """--state-dir as the command line gives it (the last one), else the default. Not
    argparse: a spelling it reads otherwise only means no proof is found, because a
    proof is written where the parsed settings say and keyed on the whole command line."""
    found: str | None = None
    for index, arg in enumerate(argv):
        if arg == "--state-dir" and index + 1 < len(argv):
            found = argv[index + 1]
        elif arg.startswith("--state-dir="):
            found = arg.partition("=")[2]
    return found or default_state_dir()


def proof_path(state_dir: str, key: str) -> str:
    return os.path.join(state_dir, FOLDER, f"{key}.json")


def read_proof(path: str) -> Proof | None:
    """The proof in `path`; None when there is none or it is unreadable or corrupt."""
    try:
        with open(path, "rb") as file:
            return Proof.from_json(json.loads(file.read()))
    except (OSError, ValueError, TypeError):
        return None


def write_proof(state_dir: str, proof: Proof) -> None:
    """Write `proof` atomically (0600), then keep only the newest MAX_PROOFS. Raises
    OSError."""
    folder = os.path.join(state_dir, FOLDER)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = proof_path(state_dir, proof.key)
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(proof.to_json(), out, ensure_ascii=False)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _keep_newest(folder)


def _keep_newest(folder: str) -> None:
    proofs = []
    with os.scandir(folder) as found:
        for entry in found:
            if entry.name.endswith(".json"):
                try:
                    proofs.append((entry.stat().st_mtime_ns, entry.path))
                except OSError:
                    continue
    for _, path in sorted(proofs, reverse=True)[MAX_PROOFS:]:
        try:
            os.unlink(path)
        except OSError:
            pass


# --- the local inputs of a pass ----------------------------------------------------------

class _Digest:
    """A digest of a sequence of texts and byte strings, each length-prefixed."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        self._hash = blake2b(digest_size=32)

    def put(self, *parts: str | bytes | int | None) -> None:
        for part in parts:
            if isinstance(part, str):
                data = part.encode("utf-8", "surrogateescape")
            elif isinstance(part, bytes):
                data = part
            else:
                data = repr(part).encode("ascii")
            self._hash.update(len(data).to_bytes(8, "little"))
            self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _put_stat(digest: _Digest, path: str) -> os.stat_result | None:
    try:
        info = os.stat(path)
    except OSError as error:
        digest.put("error", error.errno)
        return None
    digest.put(info.st_mode, info.st_uid, info.st_gid, info.st_size)
    return info


def tree_digest(directory: str) -> str:
    """The manifest tree as the loader reads it, and more: the folders it walks (hidden
    ones skipped, as it skips them) with their owners and modes, every file name in
    them, and each `*.yaml`/`*.yml` file's owner, mode, size and bytes."""
    digest = _Digest()
    digest.put("tree", directory)
    _put_stat(digest, directory)
    digest.put(os.access(directory, os.R_OK | os.X_OK))  # ACLs too, as the loader asks
    errors: list[OSError] = []
    for folder, folders, files in os.walk(directory, onerror=errors.append):
        digest.put("folder", folder, *sorted(folders))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        _put_stat(digest, folder)
        for name in sorted(files):
            digest.put("file", name)
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(folder, name)
            info = _put_stat(digest, path)
            if info is None or not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE_BYTES:
                continue
            try:
                with open(path, "rb") as file:
                    digest.put(file.read())
            except OSError as error:
                digest.put("unreadable", error.errno)
    for failed in errors:
        digest.put("walk error", failed.filename, failed.errno)
    return digest.hexdigest()


def paths_digest(sources: Iterable[str], roots: Iterable[str]) -> str:
    """The disk roots and the manifests' disk paths resolved, as `manifests.specs`
    resolves and checks them: where each leads, and what is there."""
    digest = _Digest()
    for root in roots:
        digest.put("root", root, os.path.realpath(root))
    for source in sources:
        resolved = os.path.realpath(source)
        digest.put("disk", source, resolved)
        try:
            digest.put(stat.S_IFMT(os.stat(resolved).st_mode))
        except OSError as error:
            digest.put("error", error.errno)
    return digest.hexdigest()


def locks_held(paths: Iterable[str]) -> bool:
    """Whether another run holds any of these VM lock files now (as VMLocks.held_now
    probes them: a normal pass would wait for that run, then observe afresh)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    return False
