"""NoCloud seed ISOs (controller/cloudinit.py): what is in them, read back by pycdlib and
by other ISO 9660 readers (blkid, isoinfo, genisoimage's own output); that they are
byte-identical across processes, clocks and time zones; their hashes; warnings and errors.

isoinfo and genisoimage come from Debian's genisoimage package (scripts/bootstrap.sh test).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pycdlib
import pytest

from controller.cloudinit import (
    MAX_SEED_BYTES,
    SHORT_ID_LENGTH,
    InvalidSeedInput,
    Seed,
    SeedError,
    SeedTooLarge,
    build_seed,
    check_network_config,
    check_user_data,
    content_sha256,
    meta_data_for,
    read_seed,
    seed_content_sha256,
    seed_files,
)
from controller.errors import ReconcileError

USER_DATA = "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAA ops@example]\n"
META = {"instance-id": "0b7c9a52-4cde-4f0e-9a57-3d1e2f3a4b5c", "local-hostname": "web-1"}
NETWORK = {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}
EPOCH_VD_DATE = b"2000010100000000\x00"  # 2000-01-01 00:00:00.00, GMT offset 0
REPO = Path(__file__).resolve().parents[2]


def seed(
    *,
    user_data: str = USER_DATA,
    meta_data: Mapping[str, Any] = META,
    network_config: Mapping[str, Any] | None = NETWORK,
) -> Seed:
    return build_seed(user_data=user_data, meta_data=meta_data, network_config=network_config)


def write(tmp_path: Path, data: bytes, name: str = "seed.iso") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def run(*argv: str | Path) -> str:
    return subprocess.run(
        [str(arg) for arg in argv], check=True, capture_output=True, text=True, timeout=60
    ).stdout


# --- the ISO: label, names, contents ---------------------------------------------------


def test_the_files_read_back_by_rock_ridge_joliet_and_iso9660_names() -> None:
    built = seed()
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(built.data))
    try:
        assert iso.has_rock_ridge() and iso.has_joliet()

        def names(**path: str) -> set[str]:
            found = set()
            for child in iso.list_children(**path):
                if child.is_dot() or child.is_dotdot():
                    continue
                if "rr_path" in path:
                    found.add(child.rock_ridge.name().decode())
                elif "joliet_path" in path:
                    found.add(child.file_identifier().decode("utf-16-be"))
                else:
                    found.add(child.file_identifier().decode())
            return found

        assert names(rr_path="/") == {"user-data", "meta-data", "network-config"}
        assert names(joliet_path="/") == {"user-data", "meta-data", "network-config"}
        # the level-1 names genisoimage gives them (cloud-localds)
        assert names(iso_path="/") == {"USER_DAT.;1", "META_DAT.;1", "NETWORK_.;1"}

        def content(**path: str) -> bytes:
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **path)
            return out.getvalue()

        assert content(rr_path="/user-data") == USER_DATA.encode()
        assert content(joliet_path="/user-data") == USER_DATA.encode()
        assert content(iso_path="/USER_DAT.;1") == USER_DATA.encode()
        assert content(rr_path="/meta-data") == (
            b"instance-id: 0b7c9a52-4cde-4f0e-9a57-3d1e2f3a4b5c\nlocal-hostname: web-1\n"
        )
        assert content(joliet_path="/network-config") == (
            b"ethernets:\n  eth0:\n    dhcp4: true\nversion: 2\n"
        )
        assert iso.pvd.volume_identifier.rstrip() == b"cidata"
        assert iso.joliet_vd is not None
        assert iso.joliet_vd.volume_identifier.decode("utf-16-be").rstrip() == "cidata"
    finally:
        iso.close()


def test_no_network_config_file_without_network_config() -> None:
    files = read_seed(seed(network_config=None).data)
    assert sorted(files) == ["meta-data", "user-data"]


def test_blkid_sees_an_iso9660_filesystem_labelled_cidata(tmp_path: Path) -> None:
    path = write(tmp_path, seed().data)
    out = run("blkid", "-p", "-o", "export", path)
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert fields["TYPE"] == "iso9660"
    assert fields["LABEL"] == "cidata"
    assert fields["USAGE"] == "filesystem"


def test_isoinfo_lists_and_extracts_the_lowercase_names(tmp_path: Path) -> None:
    path = write(tmp_path, seed().data)
    assert "Rock Ridge signatures version 1 found" in run("isoinfo", "-d", "-i", path)
    assert "Joliet with UCS level 3 found" in run("isoinfo", "-d", "-i", path)
    for mode in ("-R", "-J"):
        listing = run("isoinfo", mode, "-l", "-i", path)
        names = {line.split()[-1] for line in listing.splitlines() if line.startswith("-")}
        assert names == {"user-data", "meta-data", "network-config"}, mode
        assert run("isoinfo", mode, "-x", "/user-data", "-i", path) == USER_DATA
    rock = run("isoinfo", "-R", "-l", "-i", path)
    assert "-r--r--r--" in rock and "Jan  1 2000" in rock


def test_non_ascii_user_data_is_written_as_utf8() -> None:
    text = "#cloud-config\nwrite_files: [{path: /etc/motd, content: 'grüße, 世界'}]\n"
    assert read_seed(seed(user_data=text).data)["user-data"] == text.encode("utf-8")


def test_genisoimage_output_has_the_same_content_hash(tmp_path: Path) -> None:
    """cloud-localds's own tool, given the same files, makes a seed with the same content."""
    files = seed_files(user_data=USER_DATA, meta_data=META, network_config=NETWORK)
    for name, content in files.items():
        write(tmp_path, content, name)
    out = tmp_path / "theirs.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-output", str(out), "-volid", "cidata", "-joliet", "-rock",
         "user-data", "meta-data", "network-config"],
        check=True, cwd=tmp_path, capture_output=True, timeout=60,
    )
    theirs = out.read_bytes()
    assert theirs != seed().data  # another layout and other dates ...
    assert seed_content_sha256(theirs) == seed().content_sha256  # ... the same seed


# --- deterministic ---------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    if sys.argv[2] == "skewed":
        time.time = lambda: 1893456789.25  # 2030, as pycdlib sees the clock
    from pycdlib import dates
    from controller.cloudinit import build_seed
    from tests.unit.test_cloudinit import META, NETWORK, USER_DATA
    now = dates.VolumeDescriptorDate()
    now.new(time.time())
    seed = build_seed(user_data=USER_DATA, meta_data=META, network_config=NETWORK)
    open(sys.argv[1], "wb").write(seed.data)
    print(now.record().hex())
    """
)


def test_byte_identical_across_processes_clocks_and_time_zones(tmp_path: Path) -> None:
    results = []
    for label, tz, clock in (("a", "UTC0", "real"), ("b", "XYZ-5:45", "skewed")):
        out = tmp_path / f"{label}.iso"
        env = {**os.environ, "TZ": tz, "PYTHONHASHSEED": "random"}
        stamp = subprocess.run(
            [sys.executable, "-c", CHILD, str(out), clock],
            check=True, capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
        ).stdout.strip()
        results.append((stamp, out.read_bytes()))
    (stamp_a, data_a), (stamp_b, data_b) = results
    # the two processes did see different clocks and time zones ...
    assert stamp_a != stamp_b
    assert bytes.fromhex(stamp_b)[-1] == 23  # +5:45 in 15-minute units
    # ... and wrote the same bytes, the same as this process
    assert data_a == data_b == seed().data


def test_every_date_is_the_pinned_epoch() -> None:
    data = seed().data
    sector = 16
    kinds = []
    while data[sector * 2048 + 1:sector * 2048 + 6] == b"CD001" and data[sector * 2048] != 255:
        base = sector * 2048
        kinds.append(data[base])
        creation, modified = data[base + 813:base + 830], data[base + 830:base + 847]
        expires, effective = data[base + 847:base + 864], data[base + 864:base + 881]
        assert creation == modified == effective == EPOCH_VD_DATE
        assert expires == b"0" * 16 + b"\x00"  # not specified
        sector += 1
    assert kinds == [1, 2]  # the primary and the Joliet descriptor
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        for path in ({"rr_path": "/"}, {"joliet_path": "/"}):
            for child in iso.list_children(**path):
                date = child.date
                assert (date.years_since_1900, date.month, date.day_of_month) == (100, 1, 1)
                assert (date.hour, date.minute, date.second, date.gmtoffset) == (0, 0, 0, 0)
                if child.rock_ridge is not None:
                    tf = child.rock_ridge.dr_entries.tf_record
                    assert tf is not None
                    stamps = [getattr(tf, name) for name in (
                        "access_time", "modification_time", "attribute_change_time")]
                    assert all(s.record() == date.record() for s in stamps)
    finally:
        iso.close()


# --- hashes ----------------------------------------------------------------------------


def test_hashes_and_short_id() -> None:
    built = seed()
    assert built.sha256 == hashlib.sha256(built.data).hexdigest()
    files = seed_files(user_data=USER_DATA, meta_data=META, network_config=NETWORK)
    assert built.content_sha256 == content_sha256(files)
    assert built.short_id == built.content_sha256[:SHORT_ID_LENGTH]
    assert len(built.short_id) == 12 and int(built.short_id, 16) >= 0
    assert seed_content_sha256(built.data) == built.content_sha256
    # the canonical form names the seed: it must never change by accident
    assert built.content_sha256 == (
        "4b6b5f54e83dc011f857e62360234666ee01e7b7aaa551c5c455e8679769b038"
    )


SAME_INPUTS: dict[str, dict[str, Any]] = {
    "key order of metaData": {"meta_data": dict(reversed(list(META.items())))},
    "key order of networkConfig": {
        "network_config": {"ethernets": {"eth0": {"dhcp4": True}}, "version": 2}},
    "another Mapping type": {"meta_data": MappingProxyType(dict(META))},
}
OTHER_INPUTS: dict[str, dict[str, Any]] = {
    "one character of user data": {"user_data": USER_DATA.replace("ops@", "dev@")},
    "a trailing newline": {"user_data": USER_DATA + "\n"},
    "instance-id": {"meta_data": {**META, "instance-id": "another"}},
    "local-hostname": {"meta_data": {**META, "local-hostname": "web-2"}},
    "an added metaData key": {"meta_data": {**META, "public-keys": ["k"]}},
    "a networkConfig value": {"network_config": {"version": 2, "ethernets": {}}},
    "no networkConfig": {"network_config": None},
    "another networkConfig version": {"network_config": {"version": 1, "config": []}},
    "text moved from user data to meta-data": {
        "user_data": USER_DATA[:-1], "meta_data": {**META, "x": "\n"}},
}


@pytest.mark.parametrize("change", SAME_INPUTS.values(), ids=SAME_INPUTS.keys())
def test_equal_inputs_give_equal_seeds(change: dict[str, Any]) -> None:
    assert seed(**change).data == seed().data
    assert seed(**change).content_sha256 == seed().content_sha256


@pytest.mark.parametrize("change", OTHER_INPUTS.values(), ids=OTHER_INPUTS.keys())
def test_any_changed_input_changes_both_hashes(change: dict[str, Any]) -> None:
    base, other = seed(), seed(**change)
    assert other.sha256 != base.sha256
    assert other.content_sha256 != base.content_sha256
    assert other.short_id != base.short_id


def test_all_changed_inputs_are_different_from_each_other() -> None:
    hashes = [seed(**change).content_sha256 for change in OTHER_INPUTS.values()]
    assert len(set(hashes)) == len(hashes)


def test_a_truncated_or_foreign_image_is_not_a_seed() -> None:
    data = seed().data
    assert seed_content_sha256(data[: len(data) // 2]) is None
    assert seed_content_sha256(b"\0" * 65536) is None
    assert seed_content_sha256(b"") is None
    with pytest.raises(SeedError, match="^not a seed"):
        read_seed(b"\0" * 65536)


def test_an_interrupted_upload_does_not_match() -> None:
    """The tail of a volume was never written: zeros where the files' data should be."""
    data = bytearray(seed().data)
    data[31 * 2048:] = bytes(len(data) - 31 * 2048)  # the files start at extent 31
    assert seed_content_sha256(bytes(data)) != seed().content_sha256


# --- meta-data -------------------------------------------------------------------------


def test_meta_data_for_defaults_and_overrides() -> None:
    assert meta_data_for(name="web-1", uuid="u-1", overrides={}) == {
        "instance-id": "u-1", "local-hostname": "web-1"}
    overrides = {"local-hostname": "www", "public-keys": {"a": ["k"]}}
    merged = meta_data_for(name="web-1", uuid="u-1", overrides=overrides)
    assert merged == {"instance-id": "u-1", "local-hostname": "www", "public-keys": {"a": ["k"]}}
    merged["public-keys"]["a"].append("other")
    assert overrides["public-keys"] == {"a": ["k"]}  # a copy, not the manifest's own


def test_meta_data_yaml_is_sorted_and_safe() -> None:
    files = seed_files(user_data="", meta_data={"b": 1, "a": {"z": True, "y": "ü"}},
                       network_config=None)
    assert files["meta-data"] == "a:\n  y: ü\n  z: true\nb: 1\n".encode()


# --- warnings --------------------------------------------------------------------------

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#cloud-config\nusers:\n  - name: a\n    passwd: " + SECRET + "\n  bad: [\n",
         ["not valid YAML (line 5, column 3)"]),
        ("#cloud-config\na: 1\n b: " + SECRET + "\n", ["not valid YAML (line 3, column 3)"]),
        ("  \n#Cloud-Config\nkey: value: " + SECRET + "\n", ["not valid YAML (line 3, column 11)"]),
        ("#cloud-config\n- " + SECRET + "\n", ["is a list, not a mapping"]),
        ("#cloud-config\n" + SECRET + "\n", ["is a string, not a mapping"]),
        (SECRET + "\n", ["in no format cloud-init knows"]),
        ("#cloud-config\n", []),
        ("#cloud-config\nhostname: h\n", []),
        ("", []),
        ("\n\n", []),
        ("#!/bin/sh\necho " + SECRET + " [\n", []),
        ("#cloud-config-archive\n- {content: '[' }\n", []),
        ("#cloud-boothook\n" + SECRET, []),
        ("#include\nhttps://example.invalid/a\n", []),
        ("## template: jinja\n#cloud-config\nhostname: {{ v1.x }}\n", []),
        ('Content-Type: multipart/mixed; boundary="b"\nMIME-Version: 1.0\n\n--b--\n', []),
    ],
    ids=["bad-indent", "bad-mapping", "lstripped-lowercased", "list", "scalar", "unknown",
         "header-only", "valid", "empty", "blank", "script", "archive", "boothook", "include",
         "jinja", "mime"],
)
def test_user_data_warnings(text: str, expected: list[str]) -> None:
    warnings = check_user_data(text)
    assert len(warnings) == len(expected)
    for warning, part in zip(warnings, expected, strict=True):
        assert part in warning
        assert warning.startswith("cloudInit.userData ")
        assert "cloud-init will ignore it" in warning
        assert "\n" not in warning
        assert SECRET not in warning


def test_a_warning_does_not_stop_the_seed() -> None:
    text = "#cloud-config\npassword: " + SECRET + "\n  bad: [\n"
    built = seed(user_data=text)
    assert len(built.warnings) == 1 and "line 3" in built.warnings[0]
    assert read_seed(built.data)["user-data"] == text.encode()


def test_the_user_data_never_shows_in_a_repr() -> None:
    built = seed(user_data="#cloud-config\npassword: " + SECRET + "\n")
    assert SECRET not in repr(built) and SECRET not in str(built)


# --- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"meta_data": ["instance-id", "x"]}, "cloudInit.metaData must be a mapping, not a list"),
        ({"meta_data": "instance-id: x"}, "cloudInit.metaData must be a mapping, not a string"),
        ({"meta_data": None}, "cloudInit.metaData must be a mapping, not empty"),
        ({"meta_data": {1: "x"}}, "cloudInit.metaData has a key that is not a string: 1"),
        ({"meta_data": {"a": [{"b": {2: 3}}]}},
         "cloudInit.metaData.a[0].b has a key that is not a string: 2"),
        ({"meta_data": {"a": object()}},
         "cloudInit.metaData holds a value that cannot be written as YAML"),
        ({"network_config": {"version": 3}},
         "cloudInit.networkConfig.version must be 1 or 2, not 3"),
        ({"network_config": {"version": "2"}},
         "cloudInit.networkConfig.version must be 1 or 2, not '2'"),
        ({"network_config": {"version": True}},
         "cloudInit.networkConfig.version must be 1 or 2, not True"),
        ({"network_config": {"ethernets": {}}},
         "cloudInit.networkConfig.version must be 1 or 2, not missing"),
        ({"network_config": {"network": {"version": 0}}},
         "cloudInit.networkConfig.network.version must be 1 or 2, not 0"),
        ({"network_config": {"network": [1]}},
         "cloudInit.networkConfig.network must be a mapping, not a list"),
        ({"network_config": [{"version": 2}]},
         "cloudInit.networkConfig must be a mapping, not a list"),
        ({"user_data": b"#cloud-config\n"}, "cloudInit.userData must be a string, not a bytes"),
        ({"user_data": "#cloud-config\n\udcff"}, "cloudInit.userData cannot be written as UTF-8"),
    ],
)
def test_invalid_inputs_give_one_clear_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSeedInput) as caught:
        seed(**kwargs)
    assert str(caught.value) == message
    assert isinstance(caught.value, SeedError) and isinstance(caught.value, ReconcileError)


def test_meta_data_for_refuses_a_non_mapping() -> None:
    with pytest.raises(InvalidSeedInput,
                       match="^cloudInit.metaData must be a mapping, not a list$"):
        meta_data_for(name="web-1", uuid="u", overrides=["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("config", [
    {"version": 1, "config": [{"type": "physical", "name": "eth0"}]},
    {"version": 2},
    {"network": {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}},
])
def test_network_config_versions_1_and_2_are_accepted(config: dict[str, Any]) -> None:
    assert check_network_config(config) is config
    assert "network-config" in read_seed(seed(network_config=config).data)


# --- size limit ------------------------------------------------------------------------


def test_size_limit_counts_all_files_and_names_both_sizes() -> None:
    meta_size = len(seed_files(user_data="", meta_data=META, network_config=None)["meta-data"])
    at_limit = "#!/bin/sh\n" + "#" * (MAX_SEED_BYTES - meta_size - 10)
    built = seed(user_data=at_limit, network_config=None)
    assert len(read_seed(built.data)["user-data"]) == MAX_SEED_BYTES - meta_size
    with pytest.raises(SeedTooLarge) as caught:
        seed(user_data=at_limit + "#", network_config=None)
    message = str(caught.value)
    assert f"({MAX_SEED_BYTES + 1} bytes)" in message
    assert f"({MAX_SEED_BYTES} bytes)" in message
    assert "16.0 MiB" in message and "\n" not in message
    assert caught.value.size == MAX_SEED_BYTES + 1 and caught.value.limit == MAX_SEED_BYTES
    with pytest.raises(SeedTooLarge):  # network-config counts too
        seed(user_data=at_limit, network_config={"version": 2})


def test_user_data_checks_are_remembered_but_not_shared() -> None:
    text = "#cloud-config\na: 1\n b: 2\n"
    first = check_user_data(text)
    first.append("changed by a caller")
    assert check_user_data(text) == first[:1]
    assert check_user_data(text + "c: 3\n") != []
    assert check_user_data(text.replace(" b", "b")) == []
