"""A Debian 12 container booted with systemd as its PID 1 (systemd-nspawn), for the tests
of the unit file under a real systemd (tests/systemd/test_unit.py).

The tree is built once and cached outside the repository by scripts/systemd-tree.sh. A
container never writes to it: it boots an overlayfs whose upper layer is a temporary
folder, removed with the container. This machine's PID 1 is not systemd, so there is no
systemd-machined: nspawn runs with --register=no --keep-unit (no bus needed), and
commands run inside through nsenter(1) into all of the container's namespaces. It shares
the host's network (pip reaches PyPI from inside) and binds folders of the host, such as
a private libvirtd's socket folder, at the paths the container should see them.

    with Container.boot(tree=..., binds={"/tmp/rcl-x/sock": "/run/libvirt"}) as box:
        box.run("systemctl", "start", "reconcile")
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.waiting import wait_until

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REPO = Path(__file__).resolve().parents[2]


class CannotBoot(Exception):
    """The machine cannot run a container systemd; the message says why."""


#: Tools scripts/systemd-tree.sh installs with apt-get when they are missing (as root).
INSTALLED_BY_THE_TREE_SCRIPT = {"systemd-nspawn": "systemd-container", "mmdebstrap": "mmdebstrap"}


def why_not() -> str | None:
    """Why a container systemd cannot run here, or None when it can (checked cheaply).
    A tool scripts/systemd-tree.sh can install (apt-get, as root) is not a reason."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, overlayfs, a private libvirtd)"
    for tool in ("nsenter", "unshare", "libvirtd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux, libvirt-daemon)"
    for tool, package in INSTALLED_BY_THE_TREE_SCRIPT.items():
        if shutil.which(tool) is None and shutil.which("apt-get") is None:
            return f"{tool} is not installed and there is no apt-get to install {package}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (the container boots an overlay of the tree)"
    if not (Path("/sys/fs/cgroup/unified").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers")
            .exists()):
        return "no cgroup2 hierarchy is mounted (systemd 252 in a container needs one)"
    return None


class Container:
    """One booted container; see the module docstring. Stop it with close()."""

    def __init__(self, *, tree: Path, binds: Mapping[str, str]):
        self.tree = tree
        self.binds = dict(binds)
        self.name = f"rcl-{secrets.token_hex(4)}"
        self.base = Path(tempfile.mkdtemp(prefix="rcl-nspawn-", dir="/var/tmp"))
        self.root = self.base / "root"
        self.log_path = self.base / "console.log"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the host PID of the container's systemd
        self._mounted = False

    @classmethod
    @contextmanager
    def boot(cls, *, tree: Path, binds: Mapping[str, str],
             copy_repo: bool = True) -> Iterator[Container]:
        box = cls(tree=tree, binds=binds)
        try:
            box.start(copy_repo=copy_repo)
            yield box
        finally:
            box.close()

    def start(self, *, copy_repo: bool) -> None:
        for folder in ("upper", "work", "root"):
            (self.base / folder).mkdir()
        options = f"lowerdir={self.tree},upperdir={self.base}/upper,workdir={self.base}/work"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)],
                       check=True, capture_output=True)
        self._mounted = True
        if copy_repo:
            self._copy_repo(self.root / "src")
        argv = ["systemd-nspawn", "--quiet", "-D", str(self.root), "--boot",
                "--register=no", "--keep-unit", f"--machine={self.name}",
                "--console=pipe", "--link-journal=no", "--resolv-conf=replace-host",
                "--timezone=off"]
        # The host's CA bundle: this machine reaches PyPI through a TLS-inspecting proxy.
        argv.append("--bind-ro=/etc/ssl/certs")
        argv += [f"--bind={host}:{inside}" for host, inside in self.binds.items()]
        with open(self.log_path, "ab") as log:
            self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.leader = wait_until(self._find_leader, timeout=30, what="the container's PID 1")
        state = wait_until(self._booted, timeout=120, interval=0.2,
                           what="systemd in the container to finish booting")
        if state not in ("running", "degraded"):
            raise CannotBoot(f"the container's systemd reports {state!r}:\n{self.console()}")

    def _find_leader(self) -> int:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise CannotBoot(f"systemd-nspawn exited {self.nspawn.returncode}:\n"
                             f"{self.console()}")
        children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
        try:
            pids = children.read_text().split()
        except FileNotFoundError:
            return 0
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except FileNotFoundError:
                continue
        return 0

    def _booted(self) -> str:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise CannotBoot(f"systemd-nspawn exited {self.nspawn.returncode}:\n"
                             f"{self.console()}")
        proc = self.run("systemctl", "is-system-running", check=False, timeout=30)
        state = proc.stdout.strip()
        # "offline": systemd does not answer yet (too early in the boot).
        return "" if state in ("offline", "initializing", "starting", "") else state

    @staticmethod
    def _copy_repo(target: Path) -> None:
        """The repository's files as git sees them (tracked and new, not ignored)."""
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached",
                                 "--others", "--exclude-standard"],
                                check=True, capture_output=True).stdout
        for name in filter(None, listed.decode().split("\0")):
            source = REPO / name
            destination = target / name
            if source.is_symlink():  # such as controller/schemas -> ../schemas
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(os.readlink(source))
            elif source.is_file():  # else deleted in the worktree, not yet in the index
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)

    # --- inside ------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float = 120.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the container (all its namespaces, a clean environment)."""
        assert self.leader
        command = ["nsenter", "-t", str(self.leader), "-a", "--", "env", "-i",
                   f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", *argv]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"in the container: {' '.join(argv)} exited "
                                 f"{proc.returncode}\n--- stdout\n{proc.stdout}\n"
                                 f"--- stderr\n{proc.stderr}")
        return proc

    def write(self, path: str, text: str) -> None:
        """Write a file inside the container as careful tools do: a hidden temporary file
        beside it, then a rename."""
        self.run("sh", "-c", 'd=$(dirname "$1"); mkdir -p "$d"; '
                 't="$d/.$(basename "$1").tmp"; cat > "$t"; mv "$t" "$1"', "sh", path,
                 input=text)

    def host_pid(self, pid: int) -> int:
        """The host's PID of the container's process `pid` (its NSpid)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    ids = line.split()[1:]
                    if len(ids) >= 2 and ids[-1] == str(pid) and self._in_container(entry):
                        return int(ids[0])
        raise AssertionError(f"no process {pid} in the container")

    def _in_container(self, proc: Path) -> bool:
        try:
            return os.readlink(proc / "ns/pid") == os.readlink(f"/proc/{self.leader}/ns/pid")
        except OSError:
            return False

    def console(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    # --- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Power the container off (SIGTERM to nspawn: a clean systemd shutdown), wait for
        it, then remove the overlay and its upper layer."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(timeout=30)
        if self._mounted:
            def unmounted() -> bool:  # busy while a process of the container still exits
                return subprocess.run(["umount", str(self.root)], capture_output=True,
                                      check=False).returncode == 0
            try:
                wait_until(unmounted, timeout=10, interval=0.1, what="the overlay to unmount")
            except AssertionError:
                subprocess.run(["umount", "--lazy", str(self.root)], check=False)
            self._mounted = False
        shutil.rmtree(self.base, ignore_errors=True)


if __name__ == "__main__":  # .ci/run: whether to run `make test-systemd` here
    import sys
    reason = why_not()
    print(reason or "a container systemd can run here")
    sys.exit(1 if reason else 0)
