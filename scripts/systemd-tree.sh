#!/usr/bin/env bash
# Make sure the Debian 12 tree that tests/systemd boots with systemd-nspawn exists, and
# print its path:
#   scripts/systemd-tree.sh            (called by `make test-systemd`)
# The tree is /var/cache/reconcile-test/nspawn-<stamp> ($RECONCILE_NSPAWN_CACHE for the
# folder), where <stamp> hashes what goes in (RECIPE, the packages, the mirrors): when
# it is there, this does nothing but, as root, install systemd-container and mmdebstrap
# with apt-get when they are missing. Else, as root, it installs them and builds the tree
# (systemd as init, Python, and what `make install` needs to build libvirt-python;
# about 1-2 min, network to the Debian archive). Old trees of other stamps are removed.
# The tests never boot the cached tree itself: they boot an overlay over it, so it
# stays as built. Not root and something missing: it says what to run and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${RECONCILE_NSPAWN_CACHE:-/var/cache/reconcile-test}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=(
    systemd systemd-sysv dbus                       # the init under test, and its bus
    python3 python3-venv python3-dev                # the project's venv (make install)
    gcc make pkg-config libvirt-dev                 # libvirt-python builds from source
    libvirt-clients ca-certificates procps          # virsh for the tests; pip over https
    man-db                                          # systemd-analyze verify runs man(1)
)
HOST_PACKAGES=(mmdebstrap systemd-container debian-archive-keyring)

# Bump when the mmdebstrap command below changes what it builds.
RECIPE=1
stamp=$(printf '%s\n' "$RECIPE" "${PACKAGES[@]}" "$MIRROR" "$SECURITY_MIRROR" \
    | sha256sum | cut -c1-12)
tree="$CACHE/nspawn-$stamp"
missing=()
for package in "${HOST_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    if [ -f "$tree/.complete" ] && [ ${#missing[@]} -eq 0 ]; then
        echo "$tree"
        exit 0
    fi
    what=("${missing[@]}")
    [ -f "$tree/.complete" ] || what+=("the tree $tree")
    echo "systemd-tree: missing ${what[*]}; install and build as root: sudo $0" >&2
    exit 1
fi
# The host's tools first, even when the tree is cached (systemd-nspawn boots it).
if [ ${#missing[@]} -gt 0 ]; then
    echo "systemd-tree: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -f "$tree/.complete" ]; then
    echo "$tree"
    exit 0
fi

mkdir -p "$CACHE"
for old in "$CACHE"/nspawn-*; do
    if [[ $(basename "$old") =~ ^nspawn-[0-9a-f]{12}$ ]] && [ "$old" != "$tree" ]; then
        echo "systemd-tree: removing the stale $old" >&2
        rm -rf --one-file-system "$old"
    fi
done
rm -rf --one-file-system "$tree.partial"
echo "systemd-tree: building $tree (about 1-2 min)" >&2
start=$(date +%s)
mmdebstrap --variant=minbase --quiet \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --customize-hook='echo reconcile-systemd-test > "$1/etc/hostname"' \
    --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
    bookworm "$tree.partial" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY_MIRROR bookworm-security main"
touch "$tree.partial/.complete"
mv "$tree.partial" "$tree"
echo "systemd-tree: built $tree in $(( $(date +%s) - start )) s" >&2
echo "$tree"
