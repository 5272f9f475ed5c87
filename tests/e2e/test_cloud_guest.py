"""From a cloud image to a configured guest, with one manifest, on the real libvirtd and
the real Debian cloud guest (tests/guest/): the image served over HTTP by a server this
test starts on 127.0.0.1, imported into a pool of the test's own, an overlay volume made
from it, a cloud-init seed built by reconcile. Everything is checked from inside the
guest through the qemu guest agent, never by network traffic to it:

- cloud-init created the user with the SSH key, set the hostname, wrote the file;
- the root file system has the declared size (growpart on a 4 GiB overlay of a 2 GiB
  image), and a live grow reaches the running guest without a restart;
- a rerun plans nothing; an edit of the user data is a new seed for the next boot,
  without a restart; a new instance-id makes cloud-init run again at the next boot.

One guest is booted once and shared by the checks (a TCG boot takes 90 s on a quiet
machine, minutes on a loaded one).
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from ..support.command import OnceRunner
from ..support.guest import (
    ConsoleTap,
    guest_exec,
    guest_file,
    guest_image,
    real_guest_type,
    wait_for_agent,
)
from ..support.httpserver import FileServer
from ..support.manifests import Manifests
from ..support.waiting import wait_until

pytestmark = pytest.mark.guest

GIB = 1024**3
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKtestkeyOfTheCloudGuestTest reconcile@test"
BOOT = 900  # seconds: a loaded 2-core machine boots the TCG guest in 3-5 minutes


def user_data(marker: str, *, extra: str = "") -> str:
    return f"""#cloud-config
hostname: cloud-test
ssh_genkeytypes: [ed25519]
users:
  - name: ops
    ssh_authorized_keys: [{KEY}]
write_files:
  - path: /etc/reconcile-test
    content: "{marker}\\n"
runcmd:
  - [sh, -c, "echo {marker} > /dev/ttyS0"]
{extra}"""


class Guest:
    def __init__(self, conn: libvirt.virConnect, prefix: str, manifests: Manifests,
                 once: OnceRunner, server: FileServer):
        self.conn, self.prefix, self.manifests, self.once = conn, prefix, manifests, once
        self.name = f"{prefix}vm"
        self.pool = f"{prefix}pool"
        self.marker = f"CLOUD-{secrets.token_hex(4)}"
        image = guest_image()
        shutil.copy(image, server.root / "debian.qcow2")
        sha256 = (image.parent / f"{image.name}.sha256").read_text().split()[0]
        self.image: dict[str, Any] = {
            "apiVersion": "reconcile/v1", "kind": "Image", "metadata": {"name": "debian"},
            "spec": {"url": server.url("debian.qcow2"), "sha256": sha256, "pool": self.pool}}
        self.size = 4 * GIB
        self.cloud: dict[str, Any] = {"userData": user_data(self.marker), "pool": self.pool}

    def document(self) -> dict[str, Any]:
        return {"apiVersion": "reconcile/v1", "kind": "VirtualMachine",
                "metadata": {"name": self.name},
                "spec": {"memory": "512MiB", "vcpus": 1, "type": real_guest_type(),
                         "guestAgent": True, "stopTimeout": 120,
                         "disks": [{"volume": f"{self.prefix}root", "pool": self.pool,
                                    "image": "debian", "size": f"{self.size // GIB}GiB"}],
                         "cloudInit": self.cloud}}

    def write(self) -> None:
        self.manifests.write("cloud.yaml", yaml.safe_dump(self.image),
                             yaml.safe_dump(self.document()))

    @property
    def dom(self) -> libvirt.virDomain:
        return self.conn.lookupByName(self.name)

    def cloud_init_status(self) -> str:
        """`cloud-init status` now ("running", "done", "error", ...): a short call, polled,
        rather than `--wait`, which holds one agent command for the whole boot."""
        out = guest_exec(self.dom, ["cloud-init", "status"], timeout=120).stdout
        return out.partition("status:")[2].strip()

    def wait_for_boot(self) -> None:
        """Until the agent answers and cloud-init has finished; a failure shows the
        guest's console (the domain reconcile made logs it to a pty, not a file)."""
        console = ConsoleTap(self.dom)
        try:
            wait_for_agent(self.dom, BOOT)
            self.wait_for_cloud_init()
        except (AssertionError, pytest.fail.Exception) as error:
            raise AssertionError(f"{error}\nthe guest's console:\n{console.tail()}") from None
        finally:
            console.close()

    def wait_for_cloud_init(self) -> None:
        def finished() -> str | None:
            status = self.cloud_init_status()
            return None if status in ("", "not run", "running") else status

        status = wait_until(finished, BOOT, interval=5, what="cloud-init to finish in the guest")
        detail = guest_exec(self.dom, ["cloud-init", "status", "--long"], timeout=120).stdout
        assert status == "done", detail

    def run(self, text: str, *argv: str) -> str:
        result = guest_exec(self.dom, [text, *argv], timeout=120)
        assert result.exit_code == 0, result
        return result.stdout


def _pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    path = Path("/var/lib/libvirt/images") / name
    path.mkdir(mode=0o711)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>")
    pool.create()
    return pool


@pytest.fixture
def guest(conn: libvirt.virConnect, prefix: str, manifests: Manifests, once: OnceRunner,
          tmp_path: Path) -> Iterator[Guest]:
    root = tmp_path / "www"
    root.mkdir()
    with FileServer(root) as server:
        made = Guest(conn, prefix, manifests, once, server)
        pool = _pool(conn, made.pool)
        try:
            yield made
        finally:
            try:  # the domain first (the prefix fixture would too), then its volumes
                dom = conn.lookupByName(made.name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
            except libvirt.libvirtError:
                pass
            pool.refresh()
            for volume in pool.listAllVolumes():
                volume.delete()
            pool.destroy()
            pool.undefine()
            shutil.rmtree(Path("/var/lib/libvirt/images") / made.pool, ignore_errors=True)


def test_a_cloud_image_becomes_a_configured_guest_and_stays_so(guest: Guest) -> None:
    guest.write()
    first = guest.once(check_exit=0)
    assert [(image["name"], image["result"]) for image in first.report["images"]] == [
        ("debian", "converged")]
    assert first.actions(guest.name) == ["create-volume", "create-seed", "define", "start"]
    secret_free = json.dumps(first.report)
    assert KEY not in secret_free and guest.marker not in secret_free

    guest.wait_for_boot()
    assert guest.run("hostname").strip() == "cloud-test"
    assert guest_file(guest.dom, "/etc/reconcile-test").strip() == guest.marker
    assert KEY in guest_file(guest.dom, "/home/ops/.ssh/authorized_keys")
    root_bytes = int(guest.run("df", "-B1", "--output=size", "/").split()[-1])
    assert 3.5 * GIB < root_bytes <= 4 * GIB  # growpart grew the 2 GiB image's root fs
    status = json.loads(guest.run("cloud-init", "query", "ds"))
    assert status.get("meta_data", {}).get("local-hostname") == guest.name

    again = guest.once(check_exit=0)
    assert {entry["result"] for entry in again.report["vms"]} == {"unchanged"}
    assert again.report["images"][0]["result"] == "unchanged"

    # a live grow reaches the running guest at once
    booted = guest.dom.ID()
    guest.size = 5 * GIB
    guest.write()
    grown = guest.once(check_exit=0)
    assert grown.actions(guest.name) == ["grow-volume"]
    assert "(live)" in grown.vms[guest.name]["steps"][0]["reason"]
    sectors = wait_until(lambda: int(guest_file(guest.dom, "/sys/block/vda/size")) == 10485760,
                         60, what="the guest to see a 5 GiB vda")
    assert sectors and guest.dom.ID() == booted

    # new user data: a new seed for the next boot; the running guest is not restarted
    guest.cloud["userData"] = user_data(guest.marker, extra="bootcmd: [[sh, -c, 'true']]\n")
    guest.write()
    edited = guest.once(check_exit=0)
    assert edited.actions(guest.name) == ["create-seed", "define"]
    reason = edited.vms[guest.name]["steps"][1]["reason"]
    assert "next boot" in reason and "instance-id" in reason
    assert guest.dom.ID() == booted

    # a new instance-id: cloud-init runs the seed again at the next boot
    guest.cloud["metaData"] = {"instance-id": f"{guest.name}-2"}
    guest.cloud["userData"] = user_data(guest.marker, extra=(
        "bootcmd: [[sh, -c, 'echo second > /var/tmp/second-boot']]\n"))
    guest.write()
    renewed = guest.once(check_exit=0)
    # and the edit's seed, now no definition's and not the running guest's, goes at once
    assert renewed.actions(guest.name) == ["create-seed", "define", "delete-volume"]
    edited_seed = edited.vms[guest.name]["steps"][0]["reason"].split(":")[0]
    assert renewed.vms[guest.name]["steps"][2]["reason"].startswith(f"{edited_seed}:")
    guest.dom.shutdown()
    wait_until(lambda: not guest.dom.isActive(), 300, what="the guest to shut down")
    restarted = guest.once(check_exit=0)
    # started on the new seed; the first boot's seed, now nobody's, goes after the start
    assert restarted.actions(guest.name) == ["start", "delete-volume"]
    first_seed = first.vms[guest.name]["steps"][1]["reason"].split(":")[0]
    assert restarted.vms[guest.name]["steps"][1]["reason"].startswith(f"{first_seed}:")
    guest.wait_for_boot()
    assert guest_file(guest.dom, "/var/tmp/second-boot").strip() == "second"
    assert guest.run("cloud-init", "query", "instance_id").strip() == f"{guest.name}-2"
    # the seeds no definition uses any more are gone; the volume and image stay
    final = guest.once(check_exit=0)
    assert final.result(guest.name) == "unchanged", final.report
    pool = guest.conn.storagePoolLookupByName(guest.pool)
    pool.refresh()
    seeds = [name for name in pool.listVolumes() if ".cidata-" in name]
    assert len(seeds) == 1, (seeds, final.report)
