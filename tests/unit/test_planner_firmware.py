"""plan() for section 8: each field's change and its disruption class, no false changes
from what libvirt fills in when a domain runs, and the refusals that leave a VM alone."""

from __future__ import annotations

import pytest

from controller.domainxml import build_domain
from controller.model import CPU, NO_KERNEL, Kernel, Observed, Plan, UpdatePolicy, VMSpec
from controller.planner import plan
from tests.unit.test_domainxml_firmware import (
    OS_EFI_AUTO,
    OS_EFI_EXPLICIT,
    OS_EFI_LIVE,
    SPICE_OPEN,
    TPM,
    VNC,
    domain,
)
from tests.unit.test_planner import MACHINES, off, on, spec

NEXT_BOOT = UpdatePolicy.NEXT_BOOT
HOST_MODEL = ("<cpu mode='host-model' check='partial'><topology sockets='1' dies='1' "
              "cores='1' threads='1'/></cpu>")
# what libvirt 9.0 runs a host-model CPU as (seen on this host under TCG)
HOST_MODEL_LIVE = ("<cpu mode='custom' match='exact' check='full'><model fallback='forbid'>"
                   "EPYC</model><vendor>AMD</vendor><topology sockets='1' dies='1' cores='1' "
                   "threads='1'/><feature policy='require' name='acpi'/></cpu>")
QEMU64 = ("<cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64"
          "</model></cpu>")
QEMU64_LIVE = ("<cpu mode='custom' match='exact' check='full'><model fallback='forbid'>qemu64"
               "</model><feature policy='require' name='hypervisor'/></cpu>")
EFI_SB = domain(OS_EFI_AUTO, features="<acpi/><smm state='on'/>").replace(
    "pc-i440fx-7.2", "pc-q35-7.2")
EFI_SB_LIVE = domain(OS_EFI_LIVE, features="<acpi/><smm state='on'/>").replace(
    "pc-i440fx-7.2", "pc-q35-7.2")


def steps(result: Plan) -> list[tuple[str, str]]:
    return [(step.action.value, step.reason) for step in result.steps]


RESTART = [("destroy", "{} needs a restart"), ("define", "{}"),
           ("start", "start again after the restart")]


def restart(change: str) -> list[tuple[str, str]]:
    return [(action, reason.format(change)) for action, reason in RESTART]


CASES: list[tuple[str, VMSpec, Observed, list[tuple[str, str]], str | None]] = [
    ("firmware-stopped", spec(firmware="efi"), off(domain()),
     [("define", "firmware bios → efi"), ("start", "state is running, the domain is stopped")],
     None),
    ("firmware-running", spec(firmware="efi"), on(domain()), restart("firmware bios → efi"),
     None),
    ("firmware-next-boot", spec(firmware="efi", update_policy=NEXT_BOOT), on(domain()),
     [("define", "firmware bios → efi")], "firmware bios → efi takes effect at the next boot"),
    ("firmware-pending-since-earlier", spec(firmware="efi"),
     on(domain(OS_EFI_AUTO), domain()), [("destroy", "firmware bios → efi needs a restart"),
                                         ("start", "start again after the restart")], None),
    ("secure-boot-on", spec(secure_boot=True), off(domain(OS_EFI_EXPLICIT).replace(
        "pc-i440fx-7.2", "pc-q35-7.2")), [("define", "secureBoot false → true"),
                                           ("start", "state is running, the domain is stopped")],
     None),
    ("secure-boot-auto-to-false", spec(firmware="efi", secure_boot=False),
     on(domain(OS_EFI_AUTO.replace("<firmware><feature enabled='yes' name='enrolled-keys'/>"
                                   "<feature enabled='yes'\n  name='secure-boot'/></firmware>",
                                   ""))),
     restart("secureBoot auto → false"), None),
    ("secure-boot-running-as-libvirt-chose", spec(firmware="efi", secure_boot=True),
     on(EFI_SB, EFI_SB_LIVE), [], None),
    ("tpm", spec(tpm=True), on(domain()), restart("tpm false → true"), None),
    ("tpm-off", spec(tpm=False), on(domain(devices=TPM)), restart("tpm true → false"), None),
    ("host-model-runs-as-custom", spec(cpu=CPU("host-model")),
     on(domain(cpu=HOST_MODEL), domain(cpu=HOST_MODEL_LIVE)), [], None),
    ("custom-to-host-model-restarts", spec(cpu=CPU("host-model")),
     on(domain(cpu=QEMU64), domain(cpu=QEMU64_LIVE)),
     restart("cpu custom qemu64 → host-model"), None),
    ("custom-model-running", spec(cpu=CPU("custom", "qemu64")),
     on(domain(cpu=QEMU64), domain(cpu=QEMU64_LIVE)), [], None),
    ("topology", spec(vcpus=2, cpu=CPU(sockets=1, cores=2, threads=1)),
     off(domain().replace("<vcpu placement='static'>1</vcpu>",
                          "<vcpu placement='static'>2</vcpu>")),
     [("define", "cpu the hypervisor's default → sockets=1 cores=2 threads=1"),
      ("start", "state is running, the domain is stopped")], None),
    ("boot", spec(boot=("cdrom", "hd")), on(domain()), restart("boot hd → cdrom, hd"), None),
    ("kernel", spec(kernel=Kernel("/var/lib/libvirt/boot/k")), on(domain()),
     restart("kernel none → /var/lib/libvirt/boot/k"), None),
    ("kernel-removed", spec(kernel=NO_KERNEL),
     on(domain("<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>/k"
               "</kernel><boot dev='hd'/></os>")), restart("kernel /k → none"), None),
    ("graphics", spec(graphics="vnc"), on(domain()), restart("graphics none → vnc"), None),
    ("graphics-type", spec(graphics="spice"), on(domain(devices=VNC)),
     restart("graphics vnc → spice"), None),
    ("graphics-listen", spec(graphics="vnc", graphics_listen="0.0.0.0"),
     on(domain(devices=VNC)), restart("graphicsListen 127.0.0.1 → 0.0.0.0"), None),
    ("graphics-open-kept-when-said", spec(graphics="spice", graphics_listen="0.0.0.0"),
     on(domain(devices=SPICE_OPEN)), [], None),
    ("graphics-open-kept-when-left-out", spec(), on(domain(devices=SPICE_OPEN)), [], None),
    ("serial-off", spec(serial=False), on(domain()), restart("serial true → false"), None),
    ("serial-on", spec(serial=True), off(domain().replace(
        "<console type='pty'><target type='serial' port='0'/></console>", "")),
     [("define", "serial false → true"), ("start", "state is running, the domain is stopped")],
     None),
    ("everything-left-out", spec(), on(EFI_SB.replace("<devices>", "<devices>" + TPM + VNC)),
     [], None),
]


@pytest.mark.parametrize(("desired", "observed", "expected", "pending"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_plan(desired: VMSpec, observed: Observed, expected: list[tuple[str, str]],
              pending: str | None) -> None:
    result = plan(desired, observed, machines=MACHINES)
    assert (result.failure, steps(result), result.restart_pending) == (None, expected, pending)


def test_the_changes_carry_their_class() -> None:
    result = plan(spec(tpm=True, graphics="vnc", guest_agent=True), off(domain()))
    assert [(c.field, c.needs_restart) for c in result.changes] == [
        ("tpm", True), ("graphics", True), ("guestAgent", True)]


# --- refusals: nothing is done ------------------------------------------------------------

@pytest.mark.parametrize(("desired", "observed", "models", "message"), [
    (spec(graphics="vnc"), on(domain(devices=SPICE_OPEN.replace("spice", "vnc"))), None,
     "graphics: the domain's vnc listens on 0.0.0.0, beyond 127.0.0.1, and the manifest has "
     "no graphicsListen: set graphicsListen: 0.0.0.0 to keep that, or graphicsListen: "
     "127.0.0.1"),
    (spec(graphics="spice"), on(domain(devices=SPICE_OPEN)), None, "beyond 127.0.0.1"),
    (spec(cpu=CPU("custom", "Nehalem-Turbo")), on(domain()), {"qemu64", "Haswell"},
     "cpu: model 'Nehalem-Turbo' is unknown to this host's libvirt (kvm, pc-i440fx-7.2; "
     "known: Haswell, qemu64): libvirt would refuse to start the domain"),
    (spec(cpu=CPU("custom", "Nehalem-Turbo")), ABSENT := Observed(name="vm", exists=False),
     {"qemu64"}, "model 'Nehalem-Turbo' is unknown"),
    (spec(firmware="efi", secure_boot=True), off(domain()), None,
     "secureBoot needs a q35 machine; the domain has pc-i440fx-7.2: set spec.machine: q35"),
])
def test_refusals(desired: VMSpec, observed: Observed, models: set[str] | None,
                  message: str) -> None:
    result = plan(desired, observed, machines=MACHINES, cpu_models=models)
    assert result.steps == () and result.terminal
    assert result.failure is not None and message in result.failure


def test_a_model_the_domain_has_is_not_checked_and_an_unknown_list_checks_nothing() -> None:
    qemu = on(domain(cpu=QEMU64))
    assert plan(spec(cpu=CPU("custom", "qemu64")), qemu, cpu_models={"Haswell"}) == Plan()
    assert plan(spec(cpu=CPU("custom", "Haswell")), qemu, cpu_models=None).failure is None
    assert plan(spec(cpu=CPU("custom", "Haswell")), qemu, cpu_models={"Haswell"}).failure \
        is None


def test_secure_boot_on_q35_named_in_the_manifest_is_fine() -> None:
    result = plan(spec(firmware="efi", secure_boot=True, machine="q35"), off(domain()),
                  machines=MACHINES)
    assert result.failure is None
    assert [s.action.value for s in result.steps] == ["define", "start"]


# --- round trip: what the builder writes, the planner accepts as converged -------------------

FULL = [
    spec(firmware="efi", secure_boot=True, tpm=True, machine="q35", vcpus=2,
         cpu=CPU("host-model", None, 1, 2, 1), boot=("hd", "cdrom"), graphics="spice",
         serial=True, guest_agent=True),
    spec(firmware="efi", secure_boot=False, cpu=CPU("custom", "qemu64"), graphics="vnc",
         graphics_listen="0.0.0.0", serial=False,
         kernel=Kernel("/var/lib/libvirt/boot/k", "/var/lib/libvirt/boot/i", "console=ttyS0")),
    spec(firmware="bios", tpm=False, cpu=CPU("host-passthrough"), boot=("network",),
         graphics="none", kernel=NO_KERNEL, guest_agent=False),
]


@pytest.mark.parametrize("desired", FULL, ids=["sb-tpm", "efi-kernel", "bios"])
@pytest.mark.parametrize("base", ["none", "plain", "efi", "explicit"])
def test_what_was_built_plans_nothing(desired: VMSpec, base: str) -> None:
    base_xml = {"none": None, "plain": domain(devices=VNC + TPM), "efi": EFI_SB,
                "explicit": domain(OS_EFI_EXPLICIT)}[base]
    built = build_domain(desired, base_xml)
    assert plan(desired, on(built), machines=MACHINES) == Plan()
    assert build_domain(desired, built) == built
