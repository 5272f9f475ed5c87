"""The machine and the code being measured, as recorded at the top of RESULTS.md.

`bench.py` calls `machine(host)` once per run (CPU, memory, OS, libvirt, QEMU, Python and
its start-up time), `code_state(note)` for which `reconcile` is measured (where
`controller` is imported from and its git state), and `default_workers()` for the
`--workers` default of the CLI being measured.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
from pathlib import Path

from harness.host import Host, kvm_usable
from harness.runs import PY, Json, run_timed


def machine(host: Host) -> Json:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        mem_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    lib = host.conn.getLibVersion()
    hv = host.conn.getVersion()
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                          check=False).stdout.splitlines()[:1] if shutil.which(
                              "qemu-system-x86_64") else []
    startup = min(run_timed([PY, "-c", "pass"]).seconds for _ in range(5))
    import_libvirt = min(run_timed([PY, "-c", "import libvirt"]).seconds for _ in range(3))
    return {
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "libvirt": _version(lib),
        "libvirt_python": _dist_version("libvirt-python"),
        "hypervisor": f"{host.conn.getType()} {_version(hv)}",
        "qemu_binary": qemu[0] if qemu else "not found",
        "python": platform.python_version(),
        "python_path": PY,
        "python_startup_s": startup,
        "python_import_libvirt_s": import_libvirt,
        "virt_type": "kvm" if kvm_usable() else "qemu",
        "uri": host.uri,
    }


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _os_name() -> str:
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def code_state(note: str | None) -> Json:
    """Which reconcile is being measured: where it is imported from, and its git state."""
    spec = importlib.util.find_spec("controller")
    origin = Path(spec.origin).parent if spec and spec.origin else None
    state: Json = {"controller": str(origin) if origin else "not importable", "note": note}
    if origin is not None:
        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(origin), *args], capture_output=True,
                                  text=True, check=False)
            return done.stdout if done.returncode == 0 else ""
        state["commit"] = git("rev-parse", "--short", "HEAD").strip() or None
        dirty = git("status", "--porcelain", "--", ".", "../schemas", "../pyproject.toml")
        state["dirty"] = [line[3:] for line in dirty.splitlines() if line.strip()]
    return state


def default_workers() -> int:
    """The `--workers` default of the CLI being measured (4 for a CLI without one)."""
    try:
        from controller.cli import main_parser
        return int(main_parser().get_default("workers"))
    except (ImportError, AttributeError, TypeError, ValueError):  # another CLI: still run
        return 4
