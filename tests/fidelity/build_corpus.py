"""Regenerate the fidelity corpus: real-world domain definitions, each accepted by this
host's libvirtd. See README.md in this folder for what each family is and how it is made.

    .venv/bin/python tests/fidelity/build_corpus.py [--family NAME ...]
        [--libvirt-src DIR]     # an unpacked libvirt 9.0.0 source tree (apt-get source libvirt)

Every candidate is defined on qemu:///system under a unique name ("fidcorpus-<hex>-N")
and undefined again at once (keeping NVRAM, as the tests do); only the accepted ones are
written, under corpus/<family>/<slug>.xml, with the domain name replaced by the
placeholder "fidelity" and no <uuid> (the harness gives each a fresh name and UUID).
Nothing is ever started; disks may name paths that do not exist.

virt-install runs through the system python3 with two virtinst functions patched, so
that it neither creates a storage pool for a disk's folder (virtinst's default for a
local path outside any pool) nor refuses a disk image that does not exist:
`diskbackend._can_auto_manage` returns False and `StorageBackend.exists` True.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import libvirt

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
URI = "qemu:///system"
PLACEHOLDER = "fidelity"
IMAGES = "/var/lib/libvirt/images"

VIRTINST_WRAPPER = """
import sys
sys.path.insert(0, "/usr/share/virt-manager")
from virtinst import diskbackend
diskbackend._can_auto_manage = lambda path: False
diskbackend.StorageBackend.exists = lambda self: True
from virtinst import virtinstall
virtinstall.runcli()
"""


@dataclass(frozen=True)
class Candidate:
    family: str
    slug: str
    xml: str
    origin: str  # the command line or file it came from


# --- virt-install with many option sets ----------------------------------------------

def _disk(name: str, extra: str = "", fmt: str = "qcow2") -> str:
    suffix = "qcow2" if fmt == "qcow2" else "img"
    return f"--disk path={IMAGES}/{name}.{suffix},format={fmt}{extra}"


RBD_SECRET = "b0c4f9a2-6c4e-4f7a-9d3b-1f2e3d4c5b6a"

#: slug -> options. Each run also gets, unless its options say otherwise: --memory 1024
#: --vcpus 1 --os-variant debian11 --network none --graphics none, and one disk.
VIRT_INSTALL: dict[str, str] = {
    # disks of every type, bus and option
    "disk-file-qcow2-virtio": _disk("vi-a"),
    "disk-file-raw-sata": _disk("vi-b", ",bus=sata", "raw"),
    "disk-file-scsi": _disk("vi-c", ",bus=scsi") + " --controller scsi,model=virtio-scsi",
    "disk-file-ide-pc": _disk("vi-d", ",bus=ide") + " --machine pc",
    "disk-file-no-format": f"--disk path={IMAGES}/vi-e.img",
    "disk-file-generic-os-ide": f"--os-variant generic --disk path={IMAGES}/vi-e2.qcow2",
    "disk-file-cache-io-discard": _disk("vi-f", ",cache=none,io=native,discard=unmap,"
                                                "detect_zeroes=unmap"),
    "disk-file-serial-boot-order": _disk("vi-g", ",serial=WD-WX12345,boot.order=1"),
    "disk-file-iotune": _disk("vi-h", ",iotune.total_bytes_sec=10485760,"
                                      "iotune.total_iops_sec=500"),
    "disk-file-readonly-virtio": _disk("vi-i", ",readonly=on", "raw"),
    "disk-file-shareable": _disk("vi-j", ",shareable=on,cache=none", "raw"),
    "disk-file-removable-usb": _disk("vi-k", ",bus=usb,removable=on", "raw"),
    "disk-file-rotation-rate": _disk("vi-l", ",bus=sata,rotation_rate=1"),
    "disk-file-error-policy": _disk("vi-m", ",driver.error_policy=stop"),
    "disk-file-iothread": "--iothreads 2 " + _disk("vi-n", ",driver.iothread=1"),
    "disk-file-queues": _disk("vi-o", ",driver.queues=4"),
    "disk-file-usb": _disk("vi-p", ",bus=usb", "raw"),
    "disk-file-startup-policy": _disk("vi-q", ",startup_policy=optional"),
    "disk-block-virtio": "--disk type=block,source.dev=/dev/vg0/vi-lv1,device=disk",
    "disk-block-cache-none": "--disk type=block,source.dev=/dev/vg0/vi-lv2,device=disk,"
                             "cache=none,io=native,discard=unmap",
    "disk-block-sata": "--disk type=block,source.dev=/dev/sdz,device=disk,bus=sata",
    "disk-block-scsi-lun": "--disk type=block,source.dev=/dev/sdy,device=lun,bus=scsi",
    "disk-network-rbd": "--disk type=network,device=disk,source.protocol=rbd,"
                        "source.name=libvirt-pool/vi-rbd1,source.host0.name=ceph-mon1,"
                        "source.host0.port=6789,source.host1.name=ceph-mon2,"
                        "source.host1.port=6789"
                        " --xml ./devices/disk/auth/@username=libvirt"
                        " --xml ./devices/disk/auth/secret/@type=ceph"
                        f" --xml ./devices/disk/auth/secret/@uuid={RBD_SECRET}",
    "disk-network-iscsi": "--disk type=network,device=disk,source.protocol=iscsi,"
                          "source.name=iqn.2013-06.com.example:storage/1,"
                          "source.host0.name=192.0.2.10,source.host0.port=3260",
    "disk-network-nbd": "--disk type=network,device=disk,source.protocol=nbd,"
                        "source.name=export1,source.host0.name=192.0.2.11,"
                        "source.host0.port=10809",
    "disk-network-gluster": "--disk type=network,device=disk,source.protocol=gluster,"
                            "source.name=gv0/vi-gluster.img,source.host0.name=192.0.2.12",
    "disk-network-http-cdrom": "--disk type=network,device=cdrom,source.protocol=https,"
                               "source.name=/images/debian-12.iso,"
                               "source.host0.name=mirror.example.org,source.host0.port=443",
    "disk-volume-via-xml": _disk("vi-vol") + " --xml ./devices/disk/@type=volume"
                           " --xml xpath.delete=./devices/disk/source/@file"
                           " --xml ./devices/disk/source/@pool=default"
                           " --xml ./devices/disk/source/@volume=vi-vol.qcow2",
    "cdrom-ide": _disk("vi-r") + f" --disk path={IMAGES}/debian-12.iso,device=cdrom,bus=ide"
                 " --machine pc",
    "cdrom-sata": _disk("vi-s") + f" --disk path={IMAGES}/debian-12.iso,device=cdrom,bus=sata",
    "cdrom-scsi": _disk("vi-t") + f" --disk path={IMAGES}/debian-12.iso,device=cdrom,bus=scsi",
    "cdrom-empty": _disk("vi-u") + " --disk device=cdrom,bus=sata",
    "cdrom-startup-policy": _disk("vi-v") + f" --disk path={IMAGES}/seed.iso,device=cdrom,"
                            "bus=sata,startup_policy=optional",
    "floppy": _disk("vi-w") + f" --disk path={IMAGES}/vi-floppy.img,device=floppy"
              " --machine pc",
    "disks-mixed-types": _disk("vi-x1") + " " + _disk("vi-x2", ",bus=scsi", "raw")
                         + " --disk type=block,source.dev=/dev/vg0/vi-x3"
                         " --disk type=network,source.protocol=rbd,source.name=rbd/vi-x4,"
                         "source.host0.name=ceph-mon1",
    "disks-twenty": " ".join(_disk(f"vi-many-{n:02d}") for n in range(20)),
    "disk-none": "--disk none",
    # vCPUs and CPU models
    "vcpus-current": "--vcpus 6,maxvcpus=8",
    "vcpus-current-topology": "--vcpus 2,maxvcpus=8,sockets=2,cores=2,threads=2",
    "vcpus-topology": "--vcpus 4,sockets=1,cores=2,threads=2",
    "vcpus-cpuset": "--vcpus 2,cpuset=0-1",
    "vcpus-placement-auto": "--vcpus 4,vcpu.placement=auto",
    "cpu-host-passthrough": "--cpu host-passthrough",
    "cpu-host-passthrough-cache": "--cpu host-passthrough,cache.mode=passthrough",
    "cpu-host-model": "--cpu host-model",
    "cpu-named-features": "--cpu Skylake-Client-IBRS,+vmx,-hle,disable=rtm",
    "cpu-custom-match": "--cpu mode=custom,match=exact,model=Haswell-noTSX,"
                        "model.fallback=forbid",
    "cpu-numa-two-cells": "--vcpus 4 --memory 2048 --cpu host-passthrough,"
                          "cell0.id=0,cell0.cpus=0-1,cell0.memory=1048576,"
                          "cell1.id=1,cell1.cpus=2-3,cell1.memory=1048576",
    "cpu-numa-uneven-cells": "--vcpus 3 --memory 3072 --cpu host-model,"
                             "cell0.cpus=0,cell0.memory=1048576,"
                             "cell1.cpus=1-2,cell1.memory=2097152",
    "cpu-numa-distances": "--vcpus 4 --memory 2048 --cpu host-passthrough,"
                          "cell0.id=0,cell0.cpus=0-1,cell0.memory=1048576,"
                          "cell0.distances.sibling0.id=0,cell0.distances.sibling0.value=10,"
                          "cell0.distances.sibling1.id=1,cell0.distances.sibling1.value=21,"
                          "cell1.id=1,cell1.cpus=2-3,cell1.memory=1048576,"
                          "cell1.distances.sibling0.id=0,cell1.distances.sibling0.value=21,"
                          "cell1.distances.sibling1.id=1,cell1.distances.sibling1.value=10",
    "cpu-numa-hugepages": "--vcpus 2 --memory 2048 --cpu host-passthrough,"
                          "cell0.id=0,cell0.cpus=0,cell0.memory=1048576,"
                          "cell1.id=1,cell1.cpus=1,cell1.memory=1048576"
                          " --memorybacking hugepages.page0.size=2,hugepages.page0.unit=M,"
                          "hugepages.page0.nodeset=0-1",
    "cpu-numa-memaccess-shared": "--vcpus 2 --memory 2048 --cpu host-passthrough,"
                                 "numa.cell0.cpus=0-1,numa.cell0.memory=2097152,"
                                 "numa.cell0.memAccess=shared"
                                 " --memorybacking source.type=memfd,access.mode=shared",
    "cpu-numa-numatune-memnode": "--vcpus 4 --memory 4096 --cpu host-passthrough,"
                                 "cell0.id=0,cell0.cpus=0-1,cell0.memory=2097152,"
                                 "cell1.id=1,cell1.cpus=2-3,cell1.memory=2097152"
                                 " --numatune 0,mode=strict,memnode0.cellid=0,"
                                 "memnode0.mode=strict,memnode0.nodeset=0,memnode1.cellid=1,"
                                 "memnode1.mode=preferred,memnode1.nodeset=0",
    "memory-hotplug-dimm": "--vcpus 2 --memory 2048,maxMemory=8192,maxMemory.slots=16"
                           " --cpu host-passthrough,cell0.cpus=0-1,cell0.memory=1048576"
                           " --memdev dimm,target.size=1024,target.node=0",
    "cputune-pinning": "--vcpus 2 --cputune vcpupin0.vcpu=0,vcpupin0.cpuset=0,"
                       "vcpupin1.vcpu=1,vcpupin1.cpuset=1",
    "cputune-shares-period": "--cputune shares=2048,period=100000,quota=50000",
    "cputune-emulatorpin": "--vcpus 2 --cputune emulatorpin.cpuset=0,"
                           "vcpupin0.vcpu=0,vcpupin0.cpuset=1",
    "numatune-strict": "--numatune 0,mode=strict",
    "numatune-interleave": "--numatune 0,mode=interleave",
    "memorybacking-hugepages": "--memorybacking hugepages=on",
    "memorybacking-page-size": "--memorybacking hugepages.page0.size=2,hugepages.page0.unit=M",
    "memorybacking-nosharepages-locked": "--memorybacking nosharepages=on,locked=on",
    "memorybacking-memfd-shared": "--memorybacking source.type=memfd,access.mode=shared",
    "memtune-limits": "--memtune hard_limit=2097152,soft_limit=1048576,swap_hard_limit=3145728",
    "blkiotune-weight": "--blkiotune weight=500",
    "memory-current": "--memory memory=2048,currentMemory=1024",
    "memory-odd-kib": "--memory 1000",
    "iothreads": "--iothreads 4",
    # firmware, machine and boot
    "boot-uefi": "--boot uefi --machine q35",
    "boot-uefi-secure": "--boot uefi,firmware.feature0.name=secure-boot,"
                        "firmware.feature0.enabled=yes,firmware.feature1.name=enrolled-keys,"
                        "firmware.feature1.enabled=yes --machine q35 --features smm.state=on",
    "boot-loader-nvram": "--boot loader=/usr/share/OVMF/OVMF_CODE_4M.fd,loader.readonly=yes,"
                         "loader.type=pflash,nvram.template=/usr/share/OVMF/OVMF_VARS_4M.fd"
                         " --machine q35",
    "boot-menu-order": "--boot hd,cdrom,network,menu=on,bios.useserial=on",
    "boot-kernel": "--boot kernel=/var/lib/libvirt/boot/vmlinuz,initrd=/var/lib/libvirt/boot/"
                   "initrd.img,kernel_args='console=ttyS0 root=/dev/vda1'",
    "machine-pc": "--machine pc",
    "machine-q35": "--machine q35",
    "machine-pc-versioned": "--machine pc-i440fx-7.2",
    "virt-type-qemu": "--virt-type qemu",
    "arch-i686": "--arch i686 --virt-type qemu",
    # features, clock, power, events, identity
    "features-hyperv": "--features hyperv.relaxed.state=on,hyperv.vapic.state=on,"
                       "hyperv.spinlocks.state=on,hyperv.spinlocks.retries=8191,"
                       "kvm.hidden.state=on --clock offset=localtime,hypervclock_present=yes",
    "features-smm-vmport": "--features smm.state=on,vmport.state=off --machine q35",
    "clock-localtime": "--clock offset=localtime,rtc_tickpolicy=catchup,hpet_present=no",
    "pm-suspend": "--pm suspend_to_mem.enabled=on,suspend_to_disk.enabled=off",
    "events": "--events on_poweroff=destroy,on_reboot=restart,on_crash=coredump-restart",
    "sysinfo-smbios": "--sysinfo system.manufacturer=Example,system.product=Web,"
                      "system.serial=ABC-123,bios.vendor=SeaBIOS",
    "metadata-title": "--metadata title='Web server',description='Front end, team web'",
    "seclabel-dac-static": "--seclabel type=static,model=dac,label=+0:+0,relabel=yes",
    "seclabel-none": "--seclabel type=none",
    "resource-partition": "--resource /machine",
    # graphics, consoles, channels, sound, usb
    "graphics-vnc": "--graphics vnc,listen=0.0.0.0,port=5910",
    "graphics-vnc-password": "--graphics vnc,listen=127.0.0.1,password=s3cret,keymap=de",
    "graphics-spice": "--graphics spice,listen=127.0.0.1 --video qxl --channel spicevmc",
    "graphics-spice-gl": "--graphics spice,gl.enable=yes,listen=none"
                         " --video virtio,model.acceleration.accel3d=yes",
    "graphics-vnc-socket": "--graphics vnc,listen=socket",
    "video-vga-bochs": "--graphics vnc --video bochs",
    "console-serial-pty": "--console pty,target_type=serial",
    "serial-file": "--serial file,path=/var/log/libvirt/qemu/vi-serial.log",
    "serial-tcp-telnet": "--serial tcp,host=127.0.0.1:4555,mode=bind,protocol.type=telnet",
    "serial-unix": "--serial unix,path=/var/lib/libvirt/qemu/vi-serial.sock,mode=bind",
    "serial-pty-log": "--serial pty,log.file=/var/log/libvirt/qemu/vi-pty.log,log.append=on",
    "channel-guest-agent": "--channel unix,target_type=virtio,name=org.qemu.guest_agent.0",
    "channel-guestfwd": "--channel pty,target_type=guestfwd,target_address=10.0.2.1:4600",
    "sound-ich9": "--graphics spice --sound ich9",
    "sound-ac97": "--graphics vnc --sound ac97 --machine pc",
    "usb-xhci-redirdev": "--graphics spice --controller usb,model=qemu-xhci"
                         " --redirdev usb,type=spicevmc --redirdev usb,type=spicevmc",
    "usb-ehci-companions": "--controller usb2 --machine pc",
    "input-tablet-virtio": "--input tablet,bus=usb --input keyboard,bus=virtio",
    # other devices
    "tpm-emulator-crb": "--tpm emulator,model=tpm-crb,version=2.0",
    "tpm-emulator-tis": "--tpm emulator,model=tpm-tis,version=2.0 --machine q35",
    "rng-urandom": "--rng /dev/urandom",
    "rng-builtin-rate": "--rng builtin,rate.period=1000,rate.bytes=2048",
    "watchdog": "--watchdog i6300esb,action=reset",
    "memballoon-stats": "--memballoon virtio,stats.period=10",
    "memballoon-none": "--memballoon none",
    "panic-isa": "--panic isa",
    "filesystem-9p": f"--filesystem source={IMAGES}/share,target=share,accessmode=mapped",
    "filesystem-virtiofs": "--memorybacking source.type=memfd,access.mode=shared"
                           " --filesystem source=/srv/share,target=share,driver.type=virtiofs",
    "smartcard-spicevmc": "--graphics spice --smartcard passthrough,type=spicevmc",
    "vsock": "--vsock cid.auto=yes",
    "iommu-intel": "--machine q35 --features ioapic.driver=qemu --iommu model=intel,"
                   "driver.intremap=on,driver.caching_mode=on",
    "controllers-pcie-ports": "--machine q35 --controller pci,index=0,model=pcie-root"
                              " --controller pci,index=1,model=pcie-root-port"
                              " --controller pci,index=2,model=pcie-root-port",
    # interfaces
    "net-network-default": "--network network=default,model=virtio",
    "net-network-portgroup": "--network network=default,portgroup=engineering,model=virtio",
    "net-network-e1000e-mac": "--network network=default,model=e1000e,mac=52:54:00:aa:bb:cc",
    "net-bridge": "--network bridge=br0,model=virtio",
    "net-bridge-ovs": "--network bridge=ovsbr0,model=virtio,virtualport.type=openvswitch,"
                      "virtualport.parameters.interfaceid=09b11c53-8b5c-4eeb-8f00-d84eaa0aaa4f",
    "net-bridge-vlan-mtu": "--network bridge=br0,model=virtio,mtu.size=9000,link.state=up",
    "net-direct-macvtap": "--network type=direct,source=eth0,source.mode=bridge,model=virtio",
    "net-direct-vepa": "--network type=direct,source=eth0,source.mode=vepa,model=virtio",
    "net-user": "--network user,model=virtio",
    "net-user-e1000": "--network user,model=e1000",
    "net-vhostuser": "--memorybacking source.type=memfd,access.mode=shared"
                     " --network type=vhostuser,source.type=unix,"
                     "source.path=/var/run/openvswitch/vhu-vi1,source.mode=client,model=virtio",
    "net-ethernet-tap": "--network type=ethernet,target.dev=vi-tap0,model=virtio",
    "net-filterref": "--network network=default,model=virtio,filterref=clean-traffic",
    "net-driver-queues": "--network network=default,model=virtio,driver.name=vhost,"
                         "driver.queues=4",
    "net-boot-rom": "--network network=default,model=virtio,boot.order=2,rom.bar=off",
    "net-three-kinds": "--network network=default,model=virtio --network bridge=br0,model=e1000e"
                       " --network type=direct,source=eth0,source.mode=bridge,model=virtio",
    "net-no-model": "--network network=default,model=none",
    # a typical server and a typical desktop, all at once
    "server-full": "--vcpus 4,maxvcpus=8 --memory 4096 --cpu host-passthrough --machine q35 "
                   + _disk("vi-srv-root", ",cache=none,discard=unmap") + " "
                   + _disk("vi-srv-data", ",bus=scsi,cache=none", "raw")
                   + " --controller scsi,model=virtio-scsi --network bridge=br0,model=virtio"
                     " --channel unix,target_type=virtio,name=org.qemu.guest_agent.0"
                     " --serial pty --rng /dev/urandom --watchdog i6300esb,action=reset",
    "desktop-full": "--vcpus 2 --memory 4096 --graphics spice --video qxl --sound ich9"
                    " --channel spicevmc --redirdev usb,type=spicevmc --network network=default"
                    " --boot uefi --machine q35 --tpm emulator,model=tpm-crb,version=2.0 "
                    + _disk("vi-desk-root"),
}

#: What virt-manager's wizard makes (it builds guests with the same virtinst code):
#: defaults for the OS, a default-network NIC, spice graphics.
OS_VARIANTS = [
    "debian11", "debian10", "ubuntu22.04", "ubuntu20.04", "fedora37", "rhel9.0", "rhel8.6",
    "centos7.0", "centos-stream9", "almalinux9", "rocky9", "opensuse15.4", "alpinelinux3.17",
    "archlinux", "gentoo", "freebsd13.1", "openbsd7.0", "netbsd9.0", "solaris11",
    "cirros0.5.2", "win10", "win11", "win2k19", "win2k22", "win7", "winxp", "generic",
]


def _run_virt_install(slug: str, options: str, *, os_variant: str | None) -> str:
    argv = shlex.split(options)
    defaults = {"--memory": ["--memory", "1024"], "--vcpus": ["--vcpus", "1"],
                "--os-variant": ["--os-variant", os_variant or "debian11"],
                "--network": ["--network", "none"], "--graphics": ["--graphics", "none"]}
    if os_variant is not None:
        defaults["--network"] = ["--network", "network=default"]
        defaults["--graphics"] = ["--graphics", "spice"]
    command = ["/usr/bin/python3", "-c", VIRTINST_WRAPPER, "--connect", URI, "--name",
               PLACEHOLDER, "--import", "--noautoconsole", "--print-xml", "--dry-run"]
    for flag, value in defaults.items():
        if flag not in argv:
            command += value
    if "--disk" not in argv:
        command += shlex.split(_disk(f"vi-{slug}"))
    result = subprocess.run(command + argv, capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode != 0 or "<domain" not in result.stdout:
        raise RuntimeError(result.stderr.strip().splitlines()[-1:] or ["no XML"])
    return result.stdout


def virt_install_candidates() -> Iterator[Candidate]:
    jobs: list[tuple[str, str, str | None]] = [
        (slug, options, None) for slug, options in VIRT_INSTALL.items()]
    jobs += [(os_name, "", os_name) for os_name in OS_VARIANTS]

    def run(job: tuple[str, str, str | None]) -> Candidate | str:
        slug, options, os_variant = job
        family = "virt-install" if os_variant is None else "os-variant"
        shown = f"virt-install {options}" + (f" --os-variant {os_variant}" if os_variant else "")
        try:
            return Candidate(family, slug, _stable(_run_virt_install(
                slug, options, os_variant=os_variant), slug), shown)
        except RuntimeError as error:
            return f"{family}/{slug}: virt-install failed: {error}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        for outcome in pool.map(run, jobs):
            if isinstance(outcome, str):
                print(outcome)
            else:
                yield outcome


def _stable(xml: str, seed: str) -> str:
    """virt-install's random parts made deterministic: no UUID, MACs derived from `seed`."""
    xml = re.sub(r"\s*<uuid>[^<]*</uuid>", "", xml, count=1)
    counter = iter(range(256))
    tag = sum(seed.encode()) % 256

    def mac(match: re.Match[str]) -> str:
        if match.group(1).startswith("52:54:00:aa"):  # pinned by the option set
            return match.group(0)
        return f'<mac address="52:54:00:f1:{tag:02x}:{next(counter):02x}"'
    return re.sub(r'<mac address="([0-9a-f:]+)"', mac, xml)


# --- OpenStack nova's libvirt driver: the shapes it writes ----------------------------

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"


def _uuid(index: int, salt: int) -> str:
    raw = f"{(index * 7919 + salt * 104729) & 0xffffffffffffffffffffffffffffffff:032x}"
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-8{raw[17:20]}-{raw[20:32]}"


@dataclass(frozen=True)
class NovaFlavor:
    slug: str
    machine: str = "q35"
    vcpus: int = 2
    memory_mib: int = 2048
    root: str = "local"  # local | rbd | volume-iscsi | volume-rbd
    nics: tuple[str, ...] = ("ovs",)  # ovs|linuxbridge|vhostuser|sriov-hostdev|macvtap|tap
    numa_cells: int = 0
    hugepages: bool = False
    pinned: bool = False
    serial: str = "pty-log"  # pty-log | file
    graphics: str = "vnc"  # vnc | spice | none
    config_drive: str = ""  # "" | sata | ide
    ephemeral: bool = False
    cinder_extra: bool = False


NOVA_FLAVORS = [
    NovaFlavor("m1-small-local"),
    NovaFlavor("m1-small-local-pc", machine="pc"),
    NovaFlavor("m1-medium-rbd", root="rbd", memory_mib=4096),
    NovaFlavor("m1-large-rbd-cinder", root="rbd", memory_mib=8192, vcpus=4, cinder_extra=True),
    NovaFlavor("boot-from-iscsi-volume", root="volume-iscsi"),
    NovaFlavor("boot-from-rbd-volume", root="volume-rbd"),
    NovaFlavor("config-drive-sata", config_drive="sata"),
    NovaFlavor("config-drive-ide-pc", machine="pc", config_drive="ide"),
    NovaFlavor("ephemeral-disk", ephemeral=True),
    NovaFlavor("linuxbridge", nics=("linuxbridge",)),
    NovaFlavor("two-ovs-ports", nics=("ovs", "ovs")),
    NovaFlavor("vhostuser-dpdk", nics=("vhostuser",), hugepages=True, numa_cells=1),
    NovaFlavor("vhostuser-two-ports", nics=("vhostuser", "vhostuser"), hugepages=True,
               numa_cells=1),
    NovaFlavor("sriov-direct-physical", nics=("sriov-hostdev",)),
    NovaFlavor("sriov-macvtap", nics=("macvtap",)),
    NovaFlavor("os-vif-tap", nics=("tap",)),
    NovaFlavor("mixed-ports", nics=("ovs", "vhostuser", "sriov-hostdev"), hugepages=True,
               numa_cells=1),
    NovaFlavor("numa-one-cell", numa_cells=1, vcpus=4, memory_mib=4096),
    NovaFlavor("numa-two-cells", numa_cells=2, vcpus=4, memory_mib=4096),
    NovaFlavor("numa-two-cells-hugepages", numa_cells=2, vcpus=4, memory_mib=4096,
               hugepages=True),
    NovaFlavor("numa-pinned-hugepages", numa_cells=2, vcpus=4, memory_mib=8192, hugepages=True,
               pinned=True),
    NovaFlavor("cpu-pinned-one-cell", numa_cells=1, vcpus=2, pinned=True),
    NovaFlavor("serial-file", serial="file"),
    NovaFlavor("spice-console", graphics="spice"),
    NovaFlavor("headless", graphics="none"),
    NovaFlavor("tiny-cirros", vcpus=1, memory_mib=512),
    NovaFlavor("xlarge-rbd-numa", root="rbd", vcpus=8, memory_mib=16384, numa_cells=2,
               hugepages=True, pinned=True, nics=("ovs", "ovs"), cinder_extra=True),
    NovaFlavor("pc-rbd-linuxbridge", machine="pc", root="rbd", nics=("linuxbridge",)),
    NovaFlavor("pc-config-drive-sriov", machine="pc", config_drive="ide",
               nics=("sriov-hostdev", "ovs")),
    NovaFlavor("volume-iscsi-macvtap", root="volume-iscsi", nics=("macvtap",)),
    NovaFlavor("ephemeral-spice-tap", ephemeral=True, graphics="spice", nics=("tap",)),
    NovaFlavor("rbd-config-drive-numa", root="rbd", config_drive="sata", numa_cells=2, vcpus=4,
               memory_mib=4096),
]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def nova_domain(flavor: NovaFlavor, index: int) -> str:
    """One domain as nova's libvirt driver (Antelope, 2023.1) writes it for `flavor`."""
    ET.register_namespace("nova", NOVA_NS)
    n = f"{{{NOVA_NS}}}"
    instance = _uuid(index, 1)
    kib = flavor.memory_mib * 1024
    root = ET.Element("domain", type="kvm")
    _sub(root, "name", PLACEHOLDER)
    _sub(root, "memory", str(kib))
    if flavor.hugepages:
        backing = _sub(root, "memoryBacking")
        pages = _sub(backing, "hugepages")
        nodes = f"0-{flavor.numa_cells - 1}" if flavor.numa_cells > 1 else "0"
        _sub(pages, "page", size="2048", unit="KiB", nodeset=nodes)
    if flavor.numa_cells:
        numatune = _sub(root, "numatune")
        _sub(numatune, "memory", mode="strict",
             nodeset="0" if flavor.numa_cells == 1 else "0-1")
        for cell in range(flavor.numa_cells):
            _sub(numatune, "memnode", cellid=str(cell), mode="strict", nodeset="0")
    _sub(root, "vcpu", str(flavor.vcpus), **({"cpuset": "0-3"} if not flavor.pinned else {}))
    metadata = _sub(root, "metadata")
    nova = _sub(metadata, n + "instance")
    _sub(nova, n + "package", version="27.1.0")
    _sub(nova, n + "name", f"web-{index}")
    _sub(nova, n + "creationTime", f"2024-03-{1 + index % 28:02d} 10:22:31")
    nova_flavor = _sub(nova, n + "flavor", name=flavor.slug)
    for key, value in (("memory", str(flavor.memory_mib)), ("disk", "20"), ("swap", "0"),
                       ("ephemeral", "10" if flavor.ephemeral else "0"),
                       ("vcpus", str(flavor.vcpus))):
        _sub(nova_flavor, n + key, value)
    owner = _sub(nova, n + "owner")
    _sub(owner, n + "user", "admin", uuid=_uuid(index, 2).replace("-", ""))
    _sub(owner, n + "project", "demo", uuid=_uuid(index, 3).replace("-", ""))
    _sub(nova, n + "root", type="image", uuid=_uuid(index, 4))
    ports = _sub(nova, n + "ports")
    for port in range(len(flavor.nics)):
        element = _sub(ports, n + "port", uuid=_uuid(index, 10 + port))
        _sub(element, n + "ip", type="fixed", address=f"10.0.{port}.{10 + index}", ipVersion="4")
    sysinfo = _sub(root, "sysinfo", type="smbios")
    system = _sub(sysinfo, "system")
    for key, value in (("manufacturer", "OpenStack Foundation"), ("product", "OpenStack Nova"),
                       ("version", "27.1.0"), ("serial", instance), ("uuid", instance),
                       ("family", "Virtual Machine")):
        _sub(system, "entry", value, name=key)
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", machine=flavor.machine)
    _sub(os_el, "boot", dev="hd")
    _sub(os_el, "smbios", mode="sysinfo")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if flavor.machine == "q35":
        _sub(features, "vmcoreinfo", state="on")
    cputune = _sub(root, "cputune")
    _sub(cputune, "shares", str(1024 * flavor.vcpus))
    if flavor.pinned:
        for vcpu in range(flavor.vcpus):
            _sub(cputune, "vcpupin", vcpu=str(vcpu), cpuset=str(vcpu % 2))
        _sub(cputune, "emulatorpin", cpuset="0-1")
    clock = _sub(root, "clock", offset="utc")
    _sub(clock, "timer", name="pit", tickpolicy="delay")
    _sub(clock, "timer", name="rtc", tickpolicy="catchup")
    _sub(clock, "timer", name="hpet", present="no")
    cpu = _sub(root, "cpu", mode="host-model", match="exact")
    _sub(cpu, "topology", sockets=str(max(1, flavor.numa_cells)),
         cores=str(flavor.vcpus // max(1, flavor.numa_cells)), threads="1")
    if flavor.numa_cells:
        numa = _sub(cpu, "numa")
        per_cell = flavor.vcpus // flavor.numa_cells
        for cell in range(flavor.numa_cells):
            first = cell * per_cell
            cpus = str(first) if per_cell == 1 else f"{first}-{first + per_cell - 1}"
            attributes = {"id": str(cell), "cpus": cpus,
                          "memory": str(kib // flavor.numa_cells)}
            if flavor.hugepages:
                attributes["memAccess"] = "shared"
            _sub(numa, "cell", **attributes)
    devices = _sub(root, "devices")
    base = f"/var/lib/nova/instances/{instance}"
    _nova_root_disk(devices, flavor, instance, base)
    if flavor.ephemeral:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2", cache="none")
        _sub(disk, "source", file=f"{base}/disk.eph0")
        _sub(disk, "target", dev="vdb", bus="virtio")
    if flavor.cinder_extra:
        disk = _sub(devices, "disk", type="network", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", cache="writeback", discard="unmap")
        source = _sub(disk, "source", protocol="rbd", name=f"volumes/volume-{_uuid(index, 5)}")
        for mon in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
            _sub(source, "host", name=mon, port="6789")
        auth = _sub(disk, "auth", username="cinder")
        _sub(auth, "secret", type="ceph", uuid=RBD_SECRET)
        _sub(disk, "target", dev="vdc", bus="virtio")
        _sub(disk, "serial", _uuid(index, 5))
    if flavor.config_drive:
        disk = _sub(devices, "disk", type="file", device="cdrom")
        _sub(disk, "driver", name="qemu", type="raw", cache="none")
        _sub(disk, "source", file=f"{base}/disk.config")
        _sub(disk, "target", dev="sda" if flavor.config_drive == "sata" else "hda",
             bus=flavor.config_drive)
    for port, kind in enumerate(flavor.nics):
        _nova_interface(devices, kind, index, port)
    if flavor.serial == "pty-log":
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "log", file=f"{base}/console.log", append="off")
    else:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=f"{base}/console.log")
    if flavor.graphics != "none":
        _sub(devices, "input", type="tablet", bus="usb")
        if flavor.graphics == "vnc":
            _sub(devices, "graphics", type="vnc", autoport="yes", listen="0.0.0.0")
        else:
            graphics = _sub(devices, "graphics", type="spice", autoport="yes")
            _sub(graphics, "listen", type="address", address="0.0.0.0")
        video = _sub(devices, "video")
        _sub(video, "model", type="virtio")
    if flavor.machine == "q35":
        _sub(devices, "controller", type="pci", model="pcie-root")
        for _ in range(6):
            _sub(devices, "controller", type="pci", model="pcie-root-port")
    _sub(devices, "controller", type="usb", index="0")
    balloon = _sub(devices, "memballoon", model="virtio")
    _sub(balloon, "stats", period="10")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _nova_root_disk(devices: ET.Element, flavor: NovaFlavor, instance: str, base: str) -> None:
    if flavor.root == "local":
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2", cache="none")
        _sub(disk, "source", file=f"{base}/disk")
        _sub(disk, "target", dev="vda", bus="virtio")
    elif flavor.root in ("rbd", "volume-rbd"):
        disk = _sub(devices, "disk", type="network", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", cache="writeback", discard="unmap")
        name = f"vms/{instance}_disk" if flavor.root == "rbd" else f"volumes/volume-{instance}"
        source = _sub(disk, "source", protocol="rbd", name=name)
        for mon in ("192.0.2.21", "192.0.2.22", "192.0.2.23"):
            _sub(source, "host", name=mon, port="6789")
        auth = _sub(disk, "auth", username="nova" if flavor.root == "rbd" else "cinder")
        _sub(auth, "secret", type="ceph", uuid=RBD_SECRET)
        _sub(disk, "target", dev="vda", bus="virtio")
        if flavor.root == "volume-rbd":
            _sub(disk, "serial", instance)
    else:
        disk = _sub(devices, "disk", type="block", device="disk")
        _sub(disk, "driver", name="qemu", type="raw", cache="none", io="native")
        _sub(disk, "source", dev=f"/dev/disk/by-path/ip-192.0.2.30:3260-iscsi-iqn.2010-10.org."
                                 f"openstack:volume-{instance}-lun-1")
        _sub(disk, "target", dev="vda", bus="virtio")
        _sub(disk, "serial", instance)


def _nova_interface(devices: ET.Element, kind: str, index: int, port: int) -> None:
    mac = f"fa:16:3e:{index:02x}:{port:02x}:{(index * 3 + port) % 256:02x}"
    port_id = _uuid(index, 10 + port)
    tap = f"tap{port_id[:11]}"
    if kind == "ovs":
        nic = _sub(devices, "interface", type="bridge")
        _sub(nic, "mac", address=mac)
        _sub(nic, "model", type="virtio")
        _sub(nic, "driver", name="vhost", rx_queue_size="512")
        _sub(nic, "source", bridge="br-int")
        _sub(nic, "mtu", size="1450")
        _sub(nic, "target", dev=tap)
        virtualport = _sub(nic, "virtualport", type="openvswitch")
        _sub(virtualport, "parameters", interfaceid=port_id)
    elif kind == "linuxbridge":
        nic = _sub(devices, "interface", type="bridge")
        _sub(nic, "mac", address=mac)
        _sub(nic, "model", type="virtio")
        _sub(nic, "source", bridge=f"brq{port_id[:11]}")
        _sub(nic, "mtu", size="1500")
        _sub(nic, "target", dev=tap)
    elif kind == "vhostuser":
        nic = _sub(devices, "interface", type="vhostuser")
        _sub(nic, "mac", address=mac)
        _sub(nic, "model", type="virtio")
        _sub(nic, "source", type="unix", path=f"/var/run/openvswitch/vhu{port_id[:11]}",
             mode="server")
        _sub(nic, "mtu", size="1500")
    elif kind == "sriov-hostdev":
        nic = _sub(devices, "interface", type="hostdev", managed="yes")
        _sub(nic, "mac", address=mac)
        source = _sub(nic, "source")
        _sub(source, "address", type="pci", domain="0x0000", bus="0x81", slot="0x10",
             function=f"0x{(index + port) % 8:x}")
        vlan = _sub(nic, "vlan")
        _sub(vlan, "tag", id=str(100 + port))
    elif kind == "macvtap":
        nic = _sub(devices, "interface", type="direct")
        _sub(nic, "mac", address=mac)
        _sub(nic, "model", type="virtio")
        _sub(nic, "source", dev=f"enp129s0f0v{port}", mode="passthrough")
        vlan = _sub(nic, "vlan")
        _sub(vlan, "tag", id=str(200 + port))
    else:
        nic = _sub(devices, "interface", type="ethernet")
        _sub(nic, "mac", address=mac)
        _sub(nic, "model", type="virtio")
        _sub(nic, "driver", name="vhost", rx_queue_size="512")
        _sub(nic, "mtu", size="1450")
        _sub(nic, "target", dev=tap)


def nova_candidates() -> Iterator[Candidate]:
    for index, flavor in enumerate(NOVA_FLAVORS):
        yield Candidate("nova", flavor.slug, nova_domain(flavor, index),
                        f"nova-style flavor {flavor}")


# --- hand-written: the shapes issue 19 names, as an operator writes them ---------------

_HEAD = ("<domain type='kvm'>\n  <name>fidelity</name>\n  <memory unit='KiB'>{memory}</memory>\n"
         "  {vcpu}\n  <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n"
         "  </os>\n{extra}  <devices>\n")
_TAIL = "    <console type='pty'/>\n  </devices>\n</domain>\n"


def _hand(devices: str, *, memory: int = 219100, vcpu: str = "<vcpu>1</vcpu>",
          machine: str = "pc", extra: str = "") -> str:
    return _HEAD.format(memory=memory, vcpu=vcpu, machine=machine, extra=extra) + devices + _TAIL


def _file_disk(path: str, target: str, bus: str = "virtio", fmt: str = "qcow2",
               inner: str = "") -> str:
    return (f"    <disk type='file' device='disk'>\n      <driver name='qemu' type='{fmt}'/>\n"
            f"      <source file='{path}'/>\n      <target dev='{target}' bus='{bus}'/>\n"
            f"{inner}    </disk>\n")


HAND_WRITTEN: dict[str, str] = {
    "block-startup-policy": _hand(
        "    <disk type='block' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
        "      <source dev='/dev/HostVG/QEMUGuest1'/>\n      <target dev='vda' bus='virtio'/>\n"
        "    </disk>\n    <disk type='file' device='disk'>\n"
        "      <source file='/var/lib/libvirt/images/optional.img' startupPolicy='optional'/>\n"
        "      <target dev='vdb' bus='virtio'/>\n    </disk>\n"),
    "vcpu-current-two-of-six": _hand("", vcpu="<vcpu placement='static' current='2'>6</vcpu>"),
    "vcpus-hotpluggable-list": _hand(
        "", vcpu="<vcpu placement='static' current='2'>4</vcpu>\n  <vcpus>\n"
                 "    <vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>\n"
                 "    <vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>\n"
                 "    <vcpu id='2' enabled='no' hotpluggable='yes'/>\n"
                 "    <vcpu id='3' enabled='no' hotpluggable='yes'/>\n  </vcpus>",
        machine="q35", extra="  <cpu mode='host-model'><topology sockets='1' dies='1' "
                             "cores='4' threads='1'/></cpu>\n"),
    "numa-two-cells-109550": _hand(
        "", memory=219100, vcpu="<vcpu>2</vcpu>",
        extra="  <cpu>\n    <numa>\n      <cell id='0' cpus='0' memory='109550' unit='KiB'/>\n"
              "      <cell id='1' cpus='1' memory='109550' unit='KiB'/>\n    </numa>\n  </cpu>\n"),
    "numa-three-cells-uneven-mib": _hand(
        "", memory=6291456, vcpu="<vcpu>3</vcpu>",
        extra="  <cpu>\n    <numa>\n      <cell id='0' cpus='0' memory='1' unit='GiB'/>\n"
              "      <cell id='1' cpus='1' memory='2048' unit='MiB'/>\n"
              "      <cell id='2' cpus='2' memory='3145728' unit='KiB'/>\n    </numa>\n  </cpu>\n"),
    "network-disk-relative-name": _hand(
        "    <disk type='network' device='disk'>\n      <driver name='qemu' type='raw'/>\n"
        "      <source protocol='rbd' name='pool/image'>\n"
        "        <host name='ceph.example.org' port='6789'/>\n      </source>\n"
        "      <target dev='vda' bus='virtio'/>\n    </disk>\n"),
    "same-image-twice": _hand(_file_disk("/var/lib/libvirt/images/twice.img", "vda", fmt="raw")
                              + _file_disk("/var/lib/libvirt/images/twice.img", "vdb",
                                           fmt="raw")),
    "ide-disks-pc": _hand(_file_disk("/var/lib/libvirt/images/ide-a.qcow2", "hda", bus="ide")
                          + _file_disk("/var/lib/libvirt/images/ide-b.img", "hdb", bus="ide",
                                       fmt="raw")
                          + "    <disk type='file' device='cdrom'>\n"
                            "      <source file='/var/lib/libvirt/images/install.iso'/>\n"
                            "      <target dev='hdc' bus='ide'/>\n      <readonly/>\n"
                            "    </disk>\n"),
    "disk-seclabels": _hand(_file_disk(
        "/var/lib/libvirt/images/labelled.qcow2", "vda",
        inner="") .replace("<source file='/var/lib/libvirt/images/labelled.qcow2'/>",
                           "<source file='/var/lib/libvirt/images/labelled.qcow2'>\n"
                           "        <seclabel model='dac' relabel='no'/>\n      </source>"),
        extra="  <seclabel type='static' model='dac' relabel='yes'>\n"
              "    <label>+0:+0</label>\n  </seclabel>\n"),
    "memory-dumpcore-units": _hand("", memory=262144).replace(
        "<memory unit='KiB'>262144</memory>",
        "<memory unit='MiB' dumpCore='off'>256</memory>\n"
        "  <currentMemory unit='MiB'>128</currentMemory>"),
    "iothreads-cputune-numatune": _hand(
        _file_disk("/var/lib/libvirt/images/tuned.qcow2", "vda").replace(
            "<driver name='qemu' type='qcow2'/>",
            "<driver name='qemu' type='qcow2' cache='none' io='native' iothread='1'/>"),
        vcpu="<vcpu placement='static' cpuset='0-1'>2</vcpu>",
        extra="  <iothreads>1</iothreads>\n  <cputune>\n    <shares>2048</shares>\n"
              "    <vcpupin vcpu='0' cpuset='0'/>\n    <vcpupin vcpu='1' cpuset='1'/>\n"
              "    <emulatorpin cpuset='0-1'/>\n    <iothreadpin iothread='1' cpuset='1'/>\n"
              "  </cputune>\n  <numatune>\n    <memory mode='strict' nodeset='0'/>\n"
              "  </numatune>\n"),
    "hugepages-1g-numa": _hand(
        "", memory=4194304, vcpu="<vcpu>2</vcpu>", machine="q35",
        extra="  <memoryBacking>\n    <hugepages>\n"
              "      <page size='1' unit='GiB' nodeset='0-1'/>\n    </hugepages>\n"
              "  </memoryBacking>\n  <cpu mode='host-model'>\n    <numa>\n"
              "      <cell id='0' cpus='0' memory='2097152' unit='KiB'/>\n"
              "      <cell id='1' cpus='1' memory='2097152' unit='KiB'/>\n"
              "    </numa>\n  </cpu>\n"),
    "nics-direct-user-network-bridge": _hand(
        "    <interface type='direct'>\n      <mac address='52:54:00:0a:00:01'/>\n"
        "      <source dev='eth0' mode='bridge'/>\n      <model type='virtio'/>\n"
        "    </interface>\n    <interface type='network'>\n"
        "      <mac address='52:54:00:0a:00:02'/>\n"
        "      <source network='default' portgroup='web'/>\n      <model type='virtio'/>\n"
        "      <bandwidth>\n        <inbound average='1000'/>\n      </bandwidth>\n"
        "    </interface>\n    <interface type='user'>\n"
        "      <mac address='52:54:00:0a:00:03'/>\n      <model type='e1000'/>\n"
        "    </interface>\n    <interface type='bridge'>\n"
        "      <mac address='52:54:00:0a:00:04'/>\n      <source bridge='br0'/>\n"
        "      <model type='rtl8139'/>\n      <link state='down'/>\n    </interface>\n"),
    "nic-network-without-model": _hand(
        "    <interface type='network'>\n      <mac address='52:54:00:0a:00:05'/>\n"
        "      <source network='default'/>\n    </interface>\n"),
    "volume-disk": _hand(
        "    <disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n"
        "      <source pool='default' volume='web-1-root.qcow2'/>\n"
        "      <target dev='vda' bus='virtio'/>\n    </disk>\n"),
    "vmdk-and-usb-disks": _hand(
        _file_disk("/var/lib/libvirt/images/appliance.vmdk", "sda", bus="sata", fmt="vmdk")
        + _file_disk("/var/lib/libvirt/images/stick.img", "sdb", bus="usb", fmt="raw")),
}


def hand_written_candidates() -> Iterator[Candidate]:
    for slug, xml in HAND_WRITTEN.items():
        yield Candidate("hand-written", slug, xml, "tests/fidelity/build_corpus.py HAND_WRITTEN")


# --- libvirt's own test data -----------------------------------------------------------

#: Accepted by libvirtd, but beyond what any manifest can hold; `export` refuses them in
#: one line (tests/unit/test_export.py checks that), so they are not in the corpus.
EXCLUDED = {
    "memory-align-fail": "8 EiB of memory (9007199254740991 KiB), beyond the manifest's "
                         "1 PiB; libvirt's own test of a failure to start",
}

def libvirt_candidates(source: Path) -> Iterator[Candidate]:
    """tests/qemuxml2argvdata/*.xml of a libvirt source tree, renamed."""
    folder = source / "tests" / "qemuxml2argvdata"
    for path in sorted(folder.glob("*.xml")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if not re.search(r"<domain\b", text):
            continue
        renamed, count = re.subn(r"<name>[^<]*</name>", f"<name>{PLACEHOLDER}</name>", text,
                                 count=1)
        if count and path.stem not in EXCLUDED:
            yield Candidate("libvirt-tests", path.stem, renamed,
                            f"libvirt 9.0.0 tests/qemuxml2argvdata/{path.name}")


# --- the acceptance check --------------------------------------------------------------

def for_libvirt(xml: str, name: str, uuid: str) -> str:
    """A corpus definition as the harness defines it: its own name and a fresh UUID, in
    <uuid> and (libvirt requires them to match) in the SMBIOS system entry, if any."""
    xml = re.sub(r"<name>[^<]*</name>", f"<name>{name}</name>", xml, count=1)
    xml, found = re.subn(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid}</uuid>", xml, count=1)
    if not found:
        xml = xml.replace(f"<name>{name}</name>", f"<name>{name}</name>\n  <uuid>{uuid}</uuid>",
                          1)
    return re.sub(r"(<entry name=['\"]uuid['\"]>)[^<]*(</entry>)", rf"\g<1>{uuid}\g<2>", xml)


def fresh_uuid() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"


def accepted(candidates: list[Candidate]) -> tuple[list[Candidate], list[str]]:
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    connection = libvirt.open(URI)
    prefix = f"fidcorpus-{secrets.token_hex(3)}-"

    def check(item: tuple[int, Candidate]) -> str | None:
        index, candidate = item
        name = f"{prefix}{index}"
        try:
            ET.fromstring(candidate.xml)
            dom = connection.defineXML(for_libvirt(candidate.xml, name, fresh_uuid()))
        except (ET.ParseError, libvirt.libvirtError) as error:
            return str(error).splitlines()[0] if str(error) else type(error).__name__
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        return None

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            verdicts = list(pool.map(check, enumerate(candidates)))
    finally:
        for dom in connection.listAllDomains(0):
            if dom.name().startswith(prefix):
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        connection.close()
    kept = [c for c, verdict in zip(candidates, verdicts, strict=True) if verdict is None]
    refused = [f"{c.family}/{c.slug}: refused by libvirtd: {verdict}"
               for c, verdict in zip(candidates, verdicts, strict=True) if verdict is not None]
    return kept, refused


FAMILIES = ("virt-install", "os-variant", "nova", "hand-written", "libvirt-tests")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=FAMILIES,
                        help="regenerate only these families (default: all)")
    parser.add_argument("--libvirt-src", type=Path,
                        help="an unpacked libvirt source tree, for the libvirt-tests family")
    args = parser.parse_args()
    families = args.family or [f for f in FAMILIES
                               if f != "libvirt-tests" or args.libvirt_src]
    candidates: list[Candidate] = []
    if {"virt-install", "os-variant"} & set(families):
        candidates += [c for c in virt_install_candidates() if c.family in families]
    if "nova" in families:
        candidates += list(nova_candidates())
    if "hand-written" in families:
        candidates += list(hand_written_candidates())
    if "libvirt-tests" in families:
        if not args.libvirt_src:
            parser.error("--libvirt-src DIR is needed for the libvirt-tests family")
        candidates += list(libvirt_candidates(args.libvirt_src))
    kept, refused = accepted(candidates)
    for line in refused:
        print(line)
    for family in families:
        folder = CORPUS / family
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    origins: dict[str, list[str]] = {family: [] for family in families}
    for candidate in kept:
        text = candidate.xml if candidate.xml.endswith("\n") else candidate.xml + "\n"
        (CORPUS / candidate.family / f"{candidate.slug}.xml").write_text(text, encoding="utf-8")
        origins[candidate.family].append(f"{candidate.slug}.xml\t{candidate.origin}")
    for family, lines in origins.items():
        (CORPUS / family / "ORIGINS.tsv").write_text("".join(f"{line}\n" for line in sorted(lines)),
                                                     encoding="utf-8")
    for family in families:
        count = sum(1 for c in kept if c.family == family)
        print(f"{family}: {count} accepted of {sum(1 for c in candidates if c.family == family)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
