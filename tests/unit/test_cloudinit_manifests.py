"""spec.cloudInit in manifests: user data inline or from a file beside the manifest (never
read as a manifest itself), the checks cloud-init's own reading implies, one clear line
for each bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.manifests import load_directory

CLOUD = "#cloud-config\nusers: [{name: ops, ssh_authorized_keys: [ssh-ed25519 AAAA ops]}]\n"


def vm(name: str, cloud: str) -> str:
    return (f"apiVersion: reconcile/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
            f"spec:\n  memory: 64\n  vcpus: 1\n  cloudInit:\n{cloud}")


def only_invalid(directory: Path) -> tuple[str, str, str]:
    load = load_directory(str(directory))
    (entry,) = load.invalid
    return entry.file, entry.path, entry.error


def test_inline_user_data_and_defaults(manifest_dir: Path) -> None:
    (manifest_dir / "a.yaml").write_text(vm("a", "    userData: |\n      #cloud-config\n"
                                                 "      hostname: a\n"))
    load = load_directory(str(manifest_dir))
    assert load.invalid == []
    cloud = load.specs["a"].cloud_init
    assert cloud is not None
    assert (cloud.user_data, json.loads(cloud.meta_data), cloud.network_config, cloud.pool) == (
        "#cloud-config\nhostname: a\n", {}, None, "default")
    assert "hostname" not in repr(load.specs["a"])  # user data is never shown


def test_user_data_from_a_file_beside_the_manifest_is_never_a_manifest(
        manifest_dir: Path) -> None:
    (manifest_dir / "web").mkdir()
    (manifest_dir / "web" / "a.yaml").write_text(
        vm("a", "    userDataFile: a.user-data.yaml\n    metaData: {instance-id: i-1}\n"
                "    networkConfig: {version: 2, ethernets: {eth0: {dhcp4: true}}}\n"))
    (manifest_dir / "web" / "a.user-data.yaml").write_text(CLOUD)  # YAML, but user data
    load = load_directory(str(manifest_dir))
    assert load.invalid == [] and load.problem is None and load.prune_safe
    assert load.documents == 1
    cloud = load.specs["a"].cloud_init
    assert cloud is not None and cloud.user_data == CLOUD
    assert json.loads(cloud.meta_data) == {"instance-id": "i-1"}
    assert json.loads(cloud.network_config or "") == {"version": 2,
                                                      "ethernets": {"eth0": {"dhcp4": True}}}


@pytest.mark.parametrize("cloud, path, error", [
    ("    userData: x\n    userDataFile: y\n", "spec.cloudInit", "should not be valid"),
    ("    userDataFile: ../outside\n", "spec.cloudInit.userDataFile",
     "resolves outside the manifest directory"),
    ("    userDataFile: missing.txt\n", "spec.cloudInit.userDataFile",
     "missing.txt does not exist (looked for missing.txt)"),
    ("    userDataFile: /etc/passwd\n", "spec.cloudInit.userDataFile", "does not match"),
    ("    metaData: [a]\n", "spec.cloudInit.metaData", "is not of type 'object'"),
    ("    networkConfig: {version: 3}\n", "spec.cloudInit.networkConfig",
     "cloudInit.networkConfig.version must be 1 or 2, not 3"),
    ("    networkConfig: {ethernets: {}}\n", "spec.cloudInit.networkConfig",
     "version must be 1 or 2, not missing"),
    ("    pool: ../x\n", "spec.cloudInit.pool", "does not match"),
    ("    frobnicate: 1\n", "spec.cloudInit.frobnicate", "unknown field"),
])
def test_bad_cloud_init_is_one_line(manifest_dir: Path, cloud: str, path: str,
                                    error: str) -> None:
    (manifest_dir / "a.yaml").write_text(vm("a", cloud))
    file, where, reason = only_invalid(manifest_dir)
    assert (file, where) == ("a.yaml", path)
    assert error in reason and "\n" not in reason


def test_a_user_data_file_that_links_out_is_refused(manifest_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("#cloud-config\n")
    os.symlink(outside, manifest_dir / "u")
    (manifest_dir / "a.yaml").write_text(vm("a", "    userDataFile: u\n"))
    _, path, reason = only_invalid(manifest_dir)
    assert path == "spec.cloudInit.userDataFile" and "outside the manifest directory" in reason


def test_a_seed_over_the_limit_is_invalid(manifest_dir: Path) -> None:
    (manifest_dir / "big.txt").write_text("#!/bin/sh\n" + "x" * (16 * 1024 * 1024))
    (manifest_dir / "a.yaml").write_text(vm("a", "    userDataFile: big.txt\n"))
    _, path, reason = only_invalid(manifest_dir)
    assert path in ("spec.cloudInit", "spec.cloudInit.userDataFile")
    assert "16777216" in reason


def test_cloud_config_that_is_not_yaml_is_a_warning_with_its_line(manifest_dir: Path) -> None:
    (manifest_dir / "a.yaml").write_text(vm("a", "    userData: |\n      #cloud-config\n"
                                                 "      users: [oops\n"))
    load = load_directory(str(manifest_dir))
    assert load.invalid == [] and "a" in load.specs
    (warning,) = [w for w in load.warnings if "cloud" in w.lower()]
    assert warning.startswith("a.yaml: ") and "line" in warning and "oops" not in warning


def test_a_user_data_file_that_reads_as_another_kind_is_never_one(manifest_dir: Path) -> None:
    (manifest_dir / "a.yaml").write_text(vm("a", "    userDataFile: a.user-data.yaml\n"))
    (manifest_dir / "a.user-data.yaml").write_text(
        "apiVersion: reconcile/v1\nkind: Network\nmetadata: {name: lab}\n"
        "spec: {mode: isolated}\n---\n"
        "apiVersion: reconcile/v1\nkind: StoragePool\nmetadata: {name: store}\n"
        "spec: {path: /var/lib/libvirt/images/store}\n")
    load = load_directory(str(manifest_dir))
    assert load.invalid == [] and load.documents == 1
    assert load.networks == {} and load.pools == {}
    assert set(load.specs) == {"a"}
