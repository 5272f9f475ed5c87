"""The service's manifest trigger queues the Images a changed VM needs: a VM created on a
host, or moved to one, needs its image imported there first, although the Image document
itself did not change (else the VM waited for the next resync)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from controller.hosts import Hosts
from controller.service.states import VMStates
from controller.service.triggers import Triggers
from controller.watch import ManifestSet
from controller.workqueue import WorkQueue

SHA = "e3f0f4fcf54bbb5635a2f8e5bc15c5805539818c2c5c9ba92670a0dd5445c250"
HOSTS = "apiVersion: reconcile/v1\nkind: Hosts\nhosts: {kvm-1: 'test:///default', " \
        "kvm-2: 'test:///default'}\n"
IMAGES = ("apiVersion: reconcile/v1\nkind: Image\nmetadata: {name: debian}\n"
          f"spec: {{url: 'http://127.0.0.1/d.qcow2', sha256: {SHA}}}\n---\n"
          "apiVersion: reconcile/v1\nkind: Image\nmetadata: {name: other}\n"
          f"spec: {{url: 'http://127.0.0.1/o.qcow2', sha256: {SHA}}}\n")


def vm(name: str, host: str) -> str:
    return ("apiVersion: reconcile/v1\nkind: VirtualMachine\n"
            f"metadata: {{name: {name}}}\nspec:\n  memory: 64\n  vcpus: 1\n  host: {host}\n"
            f"  disks: [{{volume: {name}-root, image: debian}}]\n")


def queued(queue: WorkQueue) -> list[str]:
    names = []
    while (name := queue.get(timeout=0)) is not None:
        names.append(name)
        queue.done(name)
    return names


def test_a_vm_moved_to_another_host_queues_its_image_first(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "images.yaml").write_text(IMAGES)
    (tmp_path / "web.yaml").write_text(vm("web", "kvm-1"))
    manifests = ManifestSet(str(tmp_path))
    manifests.reload()  # the first load, as the service's start makes it
    queue = WorkQueue()
    triggers = Triggers(queue=queue, manifests=manifests, hosts=cast(Hosts, None),
                        states=VMStates(), why={}, scope=lambda: {"kvm-1", "kvm-2"},
                        prune=False, want_resync=lambda _why: None, wake=lambda: None)

    (tmp_path / "web.yaml").write_text(vm("web", "kvm-2"))
    triggers.on_manifest_change({"web.yaml"})
    assert queued(queue) == ["image:debian", "web"]  # not the Image no changed VM names

    (tmp_path / "new.yaml").write_text(vm("new", "kvm-1"))
    triggers.on_manifest_change({"new.yaml"})
    assert queued(queue) == ["image:debian", "new"]
