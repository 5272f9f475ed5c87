#!/usr/bin/env bash
# Install what reconcile needs on a Debian host, idempotently:
#   scripts/bootstrap.sh run    libvirt's client library and headers, then the venv
#   scripts/bootstrap.sh test   also libvirtd and QEMU for the end-to-end tests, and dev tools
#                               (OVMF, swtpm and cloud-image-utils for the real-guest tests)
# apt packages are installed only when missing, and only as root.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-run}
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

packages=(libvirt-dev pkg-config gcc)
if [ "$MODE" = test ]; then
    packages+=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iproute2 util-linux tini)
    # tests of the NoCloud seed read it back with isoinfo
    packages+=(genisoimage)
    # real guests (tests/e2e/test_guest_image.py): UEFI firmware, a software TPM, seed ISOs
    packages+=(ovmf swtpm swtpm-tools cloud-image-utils)
    # domains made by virt-install (tests/e2e/test_virt_install_adoption.py, tests/fidelity)
    packages+=(virtinst)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: missing Debian packages: ${missing[*]}; install them as root" >&2
        exit 1
    fi
    echo "bootstrap: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.installed-$MODE"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# editable_mode=compat puts the checkout on sys.path with a .pth line; the default
# editable mode installs an import hook that costs ~30 ms at every start.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    if [ "$MODE" = test ]; then
        "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[dev]' \
            --config-settings editable_mode=compat
    else
        "$VENV/bin/pip" install -q --disable-pip-version-check -e . \
            --config-settings editable_mode=compat
    fi
    touch "$stamp"
fi
