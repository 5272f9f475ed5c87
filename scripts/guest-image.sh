#!/usr/bin/env bash
# Make sure the real Debian 12 cloud guest that the guest tests boot exists and is up to
# date, building it when it is missing or stale:
#   scripts/guest-image.sh            (called by `make test` before pytest)
# The image goes to $RECONCILE_GUEST_IMAGE (default
# /var/cache/reconcile-test/debian-12-cloud.qcow2), with OUT.sha256, OUT.stamp and
# OUT.packages beside it. When it is there and its stamp matches the recipe
# (tests/guest/build-debian-guest.sh), this does nothing (about 1 s: the stamp and the
# sha256 are checked). Otherwise, as root, it installs the missing build packages and
# builds it (about 90 s on a quiet machine, 2-3 min on a busy one; network to the Debian
# archive). Not root and no image: it says what to run and exits 1.
# Passes FORCE, MIRROR, SECURITY_MIRROR, DEB_CACHE, ... through to the recipe.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${RECONCILE_GUEST_IMAGE:-/var/cache/reconcile-test/debian-12-cloud.qcow2}
RECIPE=tests/guest/build-debian-guest.sh
BUILD_PACKAGES=(mmdebstrap e2fsprogs fdisk dosfstools mtools qemu-utils debian-archive-keyring util-linux)

if [ "${FORCE:-0}" != 1 ] && bash "$RECIPE" --check "$IMAGE" 2>/dev/null; then
    echo "guest-image: up to date: $IMAGE" >&2
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "guest-image: $IMAGE is missing or stale; build it as root: sudo $0" >&2
    exit 1
fi

missing=()
for package in "${BUILD_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "guest-image: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "guest-image: building $IMAGE (about 90 s on a quiet machine)" >&2
start=$(date +%s)
bash "$RECIPE" "$IMAGE"
echo "guest-image: built $IMAGE in $(( $(date +%s) - start )) s" >&2
