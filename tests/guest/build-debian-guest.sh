#!/bin/bash
# build-debian-guest.sh - build a small, real Debian 12 cloud guest image.
#
#   build-debian-guest.sh [OUTPUT.qcow2]          (default below; run as root)
#   build-debian-guest.sh --check [OUTPUT.qcow2]  exit 0 when OUTPUT is up to date,
#                                                 1 when it needs a build (no root needed)
#
# Vendored from the project's tested recipe (shared/guest/build-debian-guest.sh) so
# that a clean clone builds the guest itself; scripts/guest-image.sh calls it. Changed
# here: the ESP boots through Debian's signed shim and GRUB, so the one image boots
# with SeaBIOS, with UEFI and with UEFI Secure Boot (Microsoft keys enrolled); the
# idempotence check runs before the root and host-tool checks (--check).
#
# What comes out: OUTPUT (compressed qcow2, 2 GiB virtual), OUTPUT.sha256,
# OUTPUT.packages (dpkg list of the image) and OUTPUT.stamp (inputs hash).
# The guest boots with SeaBIOS (GRUB in the MBR gap) or UEFI/OVMF, with or without
# Secure Boot (on the ESP's removable path: Debian's signed shim as BOOTX64.EFI, which
# loads Debian's signed GRUB, which boots Debian's signed kernel), logs to ttyS0,
# runs systemd, cloud-init (NoCloud seed ISO labelled "cidata"), qemu-guest-agent
# and openssh-server, and grows its root partition (the last one) on first boot via
# cloud-init growpart/resizefs.
#
# How: mmdebstrap installs Debian packages into a directory; the disk image is
# assembled WITHOUT loop devices or mounts: sfdisk writes an MBR table into a
# sparse file, mkfs.vfat/mtools fill the ESP and "mkfs.ext4 -d" fills the root
# partition in place (-E offset=), GRUB's boot.img and a core.img made by the
# guest's own grub-mkimage are written into sector 0 and the MBR gap.
#
# Re-running with the same inputs is a no-op (the stamp matches and the
# sha256 verifies); FORCE=1 rebuilds. Tunables (environment):
#   MIRROR, SECURITY_MIRROR  Debian archive URLs (default deb.debian.org)
#   DISK_SIZE_MIB            virtual disk size (default 2048)
#   EXTRA_PACKAGES           comma-separated extra packages
#   COMPRESSION              zlib (default, readable by any qemu-img) | zstd | none
#   ROOT_PASSWORD            set a root password (debugging only; default: locked)
#   DEB_CACHE                directory to keep downloaded .debs between builds
#   WORKDIR_BASE             where the temporary build tree goes (default /var/tmp)
# Host packages: mmdebstrap e2fsprogs fdisk dosfstools mtools qemu-utils debian-archive-keyring
set -Eeuo pipefail

CHECK_ONLY=0
if [[ ${1:-} == --check ]]; then CHECK_ONLY=1; shift; fi
OUT=${1:-/var/cache/reconcile-test/debian-12-cloud.qcow2}
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DISK_SIZE_MIB=${DISK_SIZE_MIB:-2048}
ESP_SIZE_MIB=32
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
COMPRESSION=${COMPRESSION:-zlib}
ROOT_PASSWORD=${ROOT_PASSWORD:-}
DEB_CACHE=${DEB_CACHE:-}
WORKDIR_BASE=${WORKDIR_BASE:-/var/tmp}
FORCE=${FORCE:-0}

PACKAGES=(
    systemd-sysv udev dbus libpam-systemd          # init, logind (ACPI power key)
    linux-image-cloud-amd64 initramfs-tools zstd    # kernel for KVM guests
    grub-pc-bin grub-efi-amd64-bin                  # boot images (BIOS + UEFI)
    shim-signed grub-efi-amd64-signed mokutil       # UEFI Secure Boot: signed shim + GRUB
    e2fsprogs fdisk cloud-guest-utils               # resize2fs, sfdisk, growpart
    cloud-init qemu-guest-agent openssh-server sudo
    ifupdown isc-dhcp-client iproute2 netbase       # cloud-init's "eni" renderer
)

log() { printf '[build-debian-guest %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case $COMPRESSION in zlib|zstd|none) ;; *) die "COMPRESSION must be zlib, zstd or none";; esac
(( DISK_SIZE_MIB >= 1024 )) || die "DISK_SIZE_MIB must be at least 1024"

OUT=$(realpath -m "$OUT")
pkgs=$(IFS=,; echo "${PACKAGES[*]}")${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}

# --- idempotence: skip when the same inputs already produced a valid image ---
stamp=$( { cat "${BASH_SOURCE[0]}"; printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" \
    "$DISK_SIZE_MIB" "$pkgs" "$COMPRESSION" "${ROOT_PASSWORD:+pw}"; } | sha256sum | cut -d' ' -f1)
if [[ $FORCE != 1 && -f $OUT && -f $OUT.sha256 && -f $OUT.stamp ]] \
   && [[ $(cat "$OUT.stamp") == "$stamp" ]] \
   && (cd "$(dirname "$OUT")" && sha256sum --quiet -c "$(basename "$OUT").sha256"); then
    log "up to date: $OUT ($(cut -d' ' -f1 "$OUT.sha256")); FORCE=1 rebuilds"
    exit 0
fi
if (( CHECK_ONLY )); then
    log "needs a build: $OUT"
    exit 1
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, mkfs -d of root-owned files)"
for tool in mmdebstrap mkfs.ext4 sfdisk mkfs.vfat mcopy mmd qemu-img sha256sum findmnt; do
    command -v "$tool" >/dev/null || die "missing host tool '$tool' (apt-get install mmdebstrap e2fsprogs fdisk dosfstools mtools qemu-utils)"
done
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] \
    || die "missing /usr/share/keyrings/debian-archive-keyring.gpg (apt-get install debian-archive-keyring)"

start_ts=$(date +%s)
mkdir -p "$(dirname "$OUT")"
WORK=$(mktemp -d "$WORKDIR_BASE/build-debian-guest.XXXXXX")
chmod 0755 "$WORK"
cleanup() {
    # never rm -rf through a mount that a failed run might have left behind
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$WORK/" | sort -r); do umount -l "$m" || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

export ROOT_UUID ESP_ID ESP_UUID WORK ROOT_PASSWORD
ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
ESP_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')       # FAT volume id, 8 hex
ESP_UUID=$(printf '%s-%s' "${ESP_ID:0:4}" "${ESP_ID:4:4}" | tr a-f A-F)
DISK_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')

# --- hooks run by mmdebstrap; $1 is the root directory -----------------------
cat >"$WORK/essential-hook.sh" <<'HOOK'
#!/bin/sh
# before the kernel is installed: initramfs settings for a generic guest
set -eu
mkdir -p "$1/etc/initramfs-tools/conf.d"
# FSTYPE: the fsck hook cannot probe the root device from a chroot
printf 'RESUME=none\nCOMPRESS=zstd\nFSTYPE=ext4\n' >"$1/etc/initramfs-tools/conf.d/cloud-image.conf"
# fstab now, so that the initramfs gets fsck.ext4 for the root fs. The ESP is
# not mounted: nothing in the guest updates it.
printf 'UUID=%s / ext4 rw,discard,errors=remount-ro 0 1\n' "$ROOT_UUID" >"$1/etc/fstab"
HOOK

cat >"$WORK/customize-hook.sh" <<'HOOK'
#!/bin/sh
set -eu
R=$1
echo debian >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' >"$R/etc/hosts"

# ifupdown reads cloud-init's /etc/network/interfaces.d/50-cloud-init
if ! grep -qs 'interfaces.d' "$R/etc/network/interfaces"; then
    printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' >"$R/etc/network/interfaces"
fi

# cloud-init: only local datasources (no network probing), C.UTF-8 locale,
# host keys of the types sshd loads (no DSA), no grub-pc debconf (not installed)
cat >"$R/etc/cloud/cloud.cfg.d/90-local-image.cfg" <<'EOF'
datasource_list: [ NoCloud, ConfigDrive, None ]
locale: C.UTF-8
ssh_genkeytypes: [ rsa, ecdsa, ed25519 ]
grub_dpkg:
  enabled: false
EOF
echo 'LANG=C.UTF-8' >"$R/etc/default/locale"

# GRUB: one grub.cfg on the root fs for both firmwares. no_timer_check: the
# kernel's IO-APIC timer check panics on slow or overcommitted (TCG) hosts. The kernel and initrd
# are reached through Debian's /vmlinuz and /initrd.img symlinks, so kernel
# upgrades inside the guest keep booting; /etc/default/grub matches in case
# update-grub is ever run in the guest.
mkdir -p "$R/boot/grub"
for p in i386-pc x86_64-efi; do
    mkdir -p "$R/boot/grub/$p"
    cp "$R/usr/lib/grub/$p/"*.mod "$R/usr/lib/grub/$p/"*.lst "$R/boot/grub/$p/"
done
cat >"$R/boot/grub/grub.cfg" <<EOF
set default=0
set timeout=0
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
insmod part_msdos
insmod ext2
if [ "\$grub_platform" = efi ]; then insmod all_video; fi
search --no-floppy --fs-uuid --set=root $ROOT_UUID
menuentry 'Debian GNU/Linux 12 (cloud image)' {
    linux /vmlinuz root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8 no_timer_check
    initrd /initrd.img
}
EOF
cat >"$R/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 no_timer_check"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
cat >"$R/tmp/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $ROOT_UUID
set prefix=(\$root)/boot/grub
EOF
mods="part_msdos ext2 fat search search_fs_uuid normal configfile linux echo test serial terminal"
chroot "$R" grub-mkimage -O i386-pc -o /tmp/core.img -c /tmp/early.cfg -p /boot/grub \
    biosdisk $mods
cp "$R/tmp/core.img" "$R/usr/lib/grub/i386-pc/boot.img" "$WORK/"
rm -f "$R/tmp/core.img" "$R/tmp/early.cfg"

# UEFI, with or without Secure Boot: the ESP's removable path holds Debian's signed
# shim as BOOTX64.EFI; shim loads grubx64.efi from its own folder (there is no
# fbx64.efi, so shim never runs the fallback that writes boot entries). Signed GRUB is
# monolithic (every module grub.cfg uses is built in), its prefix is /EFI/debian on
# the device it was loaded from, and its built-in config sources $prefix/grub.cfg
# first: so /EFI/debian/grub.cfg on the ESP (where Debian's grub-install puts it), which
# hands over to the root fs's /boot/grub/grub.cfg. (Without /EFI/debian it would try
# /.disk/info, print two errors and read /EFI/BOOT/grub.cfg.) Under Secure Boot, GRUB
# has shim verify the kernel: Debian's kernels are signed.
mkdir -p "$WORK/esp"
cp "$R/usr/lib/shim/shimx64.efi.signed" "$WORK/esp/BOOTX64.EFI"
cp "$R/usr/lib/shim/mmx64.efi.signed" "$WORK/esp/mmx64.efi"
cp "$R/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" "$WORK/esp/grubx64.efi"
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' \
    "$ROOT_UUID" >"$WORK/esp/grub.cfg"

# slow (emulated, TCG) hosts: udev may need more than 90 s to announce ttyS0,
# and serial-getty@ttyS0 would fail
mkdir -p "$R/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultDeviceTimeoutSec=300s\n' >"$R/etc/systemd/system.conf.d/50-slow-hosts.conf"

# quiet test guest: no periodic apt traffic
chroot "$R" systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

if [ -n "$ROOT_PASSWORD" ]; then
    echo "root:$ROOT_PASSWORD" | chroot "$R" chpasswd
fi

chroot "$R" dpkg-query -W -f '${Package}\t${Version}\n' >"$WORK/packages"

# per-instance state is created on first boot, not baked into the image
rm -f "$R"/etc/ssh/ssh_host_*_key "$R"/etc/ssh/ssh_host_*_key.pub
: >"$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R/var/lib/systemd/random-seed"
: >"$R/etc/resolv.conf"
rm -rf "$R"/var/lib/cloud/* "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/debconf/*-old \
       "$R"/var/lib/dpkg/*-old "$R"/tmp/* "$R"/var/tmp/* "$R"/root/.bash_history
find "$R/var/log" -type f -exec truncate -s 0 {} +
HOOK
chmod 0755 "$WORK/essential-hook.sh" "$WORK/customize-hook.sh"

cache_args=()
if [[ -n $DEB_CACHE ]]; then
    mkdir -p "$DEB_CACHE"
    DEB_CACHE=$(realpath "$DEB_CACHE")
    cache_args=(--skip=essential/unlink
        --setup-hook="mkdir -p \"\$1/var/cache/apt/archives/\""
        --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/"
        --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE")
fi

log "mmdebstrap $SUITE -> $WORK/root"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --include="$pkgs" \
    "${cache_args[@]}" \
    --essential-hook="$WORK/essential-hook.sh \"\$1\"" \
    --customize-hook="$WORK/customize-hook.sh \"\$1\"" \
    "$SUITE" "$WORK/root" \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main"
log "root tree: $(du -sh --one-file-system "$WORK/root" | cut -f1)"

# --- disk layout (512-byte sectors, MBR) --------------------------------------
#   0          boot.img (440 bytes) + partition table
#   1..2047    GRUB core.img (BIOS)
#   p1         ESP, FAT, 32 MiB: /EFI/BOOT/{BOOTX64.EFI (shim),grubx64.efi,mmx64.efi},
#              /EFI/debian/grub.cfg
#   p2         root ext4, rest of the disk (last, so growpart can grow it)
esp_start=2048
esp_sectors=$((ESP_SIZE_MIB * 2048))
root_start=$((esp_start + esp_sectors))
total_sectors=$((DISK_SIZE_MIB * 2048))
root_sectors=$((total_sectors - root_start))
core_sectors=$(( ($(stat -c %s "$WORK/core.img") + 511) / 512 ))
(( core_sectors < esp_start - 1 )) || die "core.img too big for the MBR gap"

DISK=$WORK/disk.raw
truncate -s "$((total_sectors * 512))" "$DISK"
sfdisk --quiet "$DISK" <<EOF
label: dos
label-id: 0x$DISK_ID
unit: sectors
start=$esp_start, size=$esp_sectors, type=ef
start=$root_start, size=$root_sectors, type=83, bootable
EOF

log "ESP (vfat, id $ESP_UUID)"
mkfs.vfat -F 16 --offset="$esp_start" -n EFI -i "$ESP_ID" "$DISK" "$((esp_sectors / 2))" 2>&1 \
    | { grep -v -e '^mkfs.fat ' -e 'block count mismatch' || true; } >&2
export MTOOLS_SKIP_CHECK=1
mmd -i "$DISK@@$((esp_start * 512))" ::/EFI ::/EFI/BOOT ::/EFI/debian
mcopy -i "$DISK@@$((esp_start * 512))" "$WORK/esp/BOOTX64.EFI" "$WORK/esp/grubx64.efi" \
    "$WORK/esp/mmx64.efi" ::/EFI/BOOT/
mcopy -i "$DISK@@$((esp_start * 512))" "$WORK/esp/grub.cfg" ::/EFI/debian/grub.cfg

log "root fs (ext4, uuid $ROOT_UUID) from the tree"
mkfs.ext4 -q -F -L root -U "$ROOT_UUID" -E "offset=$((root_start * 512))" \
    -d "$WORK/root" "$DISK" "$((root_sectors / 2))k"

log "GRUB for BIOS: boot.img -> MBR, core.img ($core_sectors sectors) -> gap"
dd if="$WORK/boot.img" of="$DISK" bs=440 count=1 conv=notrunc status=none
dd if="$WORK/core.img" of="$DISK" bs=512 seek=1 conv=notrunc status=none

log "qcow2 ($COMPRESSION)"
convert_args=(-f raw -O qcow2)
case $COMPRESSION in
    zlib) convert_args+=(-c) ;;
    zstd) convert_args+=(-c -o compression_type=zstd) ;;
esac
qemu-img convert "${convert_args[@]}" "$DISK" "$OUT.tmp"
chmod 0644 "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
(cd "$(dirname "$OUT")" && sha256sum "$(basename "$OUT")" >"$(basename "$OUT").sha256")
cp "$WORK/packages" "$OUT.packages"
echo "$stamp" >"$OUT.stamp"
chmod 0644 "$OUT.sha256" "$OUT.packages" "$OUT.stamp"
chmod a+rx "$(dirname "$OUT")"

log "done in $(( $(date +%s) - start_ts )) s: $OUT ($(du -h "$OUT" | cut -f1), virtual ${DISK_SIZE_MIB} MiB)"
cat "$OUT.sha256"
