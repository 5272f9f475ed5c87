"""A no-op pass over plain stopped VMs imports no feature code (issue 12).

Storage, images, cloud-init seeds, moves, guest reads, the event loop and the retries
are imported where a manifest or a domain uses them, not at start-up: a child
`reconcile --once` over a plain VM that is already as its manifest says, on libvirt's
test driver (a host file holding the domain, as the define of a pass would have left
it), reports `unchanged` and has none of them in `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller import domainxml
from controller.manifests import load_directory
from tests.support.command import clean_env, describe, parse_report
from tests.support.prefix import unique_prefix

from .conftest import vm

#: Modules (and packages, with everything under them) a plain no-op pass must not import.
FEATURE_MODULES = (
    "controller.cloudinit",
    "controller.images",
    "controller.virt.storage",
    "controller.virt.transfer",
    "controller.virt.streams",
    "controller.virt.carry",
    "controller.virt.volumes",
    "controller.virt.partial",
    "controller.virt.volume_reads",
    "controller.virt.guest",
    "controller.readiness",
    "controller.virt.events",
    "controller.planner.storage",
    "controller.planner.seed",
    "controller.planner.moves",
    "controller.observing_moves",
    "controller.service",
    "tenacity",
)

#: Standard library modules no pass on a local host imports: shutil (with zlib, bz2 and
#: lzma) was argparse's question for the terminal's width at each add_argument, socket
#: (with selectors) the TCP deadline of remote connections (virt/sockets.py).
START_UP_SKIPS = ("shutil", "socket")

#: Modules the pass does import: the check looks at the child's real `sys.modules`.
PASS_NEEDS = ("controller.reconciler", "controller.passes", "controller.domainxml",
              "controller.virt.domains", "libvirt")

#: Runs `reconcile ARGS` (the console script's entry) in this child and writes its
#: `sys.modules` to the file argv[1].
_CHILD = """
import json, sys
from controller.entry import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"


def run_child(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    modules_file = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(modules_file), *args],
                          capture_output=True, text=True, timeout=120, env=clean_env(),
                          check=False)
    modules = set(json.loads(modules_file.read_text())) if modules_file.exists() else set()
    return proc, modules


def feature_modules_in(modules: set[str]) -> list[str]:
    return sorted(name for name in modules
                  if any(name == feature or name.startswith(feature + ".")
                         for feature in FEATURE_MODULES))


def stopped_host(tmp_path: Path, manifests: Path) -> str:
    """A test-driver host file holding every VM of `manifests`, defined as a pass defines
    it and shut off; its URI."""
    load = load_directory(str(manifests))
    assert load.specs and not load.invalid, load.invalid
    domains = "".join(
        domainxml.build_domain(spec).replace(
            "</domain>", f"<test:runstate xmlns:test='{TEST_NS}'>5</test:runstate></domain>")
        for spec in load.specs.values())
    host = tmp_path / "host.xml"
    host.write_text(f"<node>{domains}</node>")
    return f"test://{host}"


def test_a_noop_pass_over_plain_stopped_vms_imports_no_feature_code(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    names = [f"{unique_prefix()}plain-{index}" for index in range(2)]
    for name in names:
        (manifests / f"{name}.yaml").write_text(vm(name, state="stopped"))
    uri = stopped_host(tmp_path, manifests)

    proc, modules = run_child(tmp_path, "--once", "-m", str(manifests), "-c", uri,
                              "--lock-dir", str(tmp_path / "locks"),
                              "--state-dir", str(tmp_path / "state"), "-o", "json")

    assert proc.returncode == 0, describe(proc)
    report = parse_report(proc)
    assert {entry["name"]: (entry["result"], entry["steps"]) for entry in report["vms"]} == {
        name: ("unchanged", []) for name in names}, describe(proc)
    assert not set(PASS_NEEDS) - modules, "the child's modules were not read"
    assert feature_modules_in(modules) == [], describe(proc)
    assert sorted(set(START_UP_SKIPS) & modules) == [], describe(proc)


def test_a_pass_making_a_volume_for_a_vm_without_a_seed_imports_no_seed_code(
        tmp_path: Path) -> None:
    """The storage planner runs for a VM with a volume; the seed planner (with the
    cloud-init package) only for a VM with cloudInit, or one being removed."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    name = f"{unique_prefix()}volume"
    (manifests / f"{name}.yaml").write_text(
        vm(name, state="stopped")
        + f"  disks: [{{volume: {name}-root, pool: default-pool, size: 16MiB}}]\n")

    proc, modules = run_child(tmp_path, "--once", "-m", str(manifests), "-c", "test:///default",
                              "--lock-dir", str(tmp_path / "locks"),
                              "--state-dir", str(tmp_path / "state"), "-o", "json")

    assert proc.returncode == 0, describe(proc)
    (entry,) = parse_report(proc)["vms"]
    assert (entry["result"], [step["action"] for step in entry["steps"]]) == (
        "converged", ["create-volume", "define"]), describe(proc)
    assert "controller.planner.storage" in modules, "the storage planner did not run"
    assert [module for module in modules
            if module == "controller.planner.seed" or module.startswith("controller.cloudinit")
            ] == [], describe(proc)


def test_the_check_sees_feature_code_a_manifest_uses(tmp_path: Path) -> None:
    """The same child over a VM with a cloud-init seed does import the seed's code: the
    check above looks at modules that are really imported when used."""
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    name = f"{unique_prefix()}seeded"
    (manifests / f"{name}.yaml").write_text(
        vm(name, state="stopped") + "  cloudInit:\n    userData: '#cloud-config'\n")

    proc, modules = run_child(tmp_path, "validate", "-m", str(manifests))

    assert proc.returncode == 0, describe(proc)
    assert "controller.cloudinit" in feature_modules_in(modules), describe(proc)
