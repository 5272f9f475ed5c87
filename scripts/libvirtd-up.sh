#!/usr/bin/env bash
# Make sure a system libvirtd answers on qemu:///system, starting it by hand when there
# is no systemd (containers, CI). Also makes /dev/kvm usable by QEMU's user: without
# that, libvirt re-probes QEMU on every define and each define takes ~40 s.
set -euo pipefail

if [ "$(id -u)" -eq 0 ] && [ -e /dev/kvm ]; then
    chmod 0666 /dev/kvm
fi
# swtpm's local CA (/var/lib/swtpm-localca, from swtpm-tools) must be the tss user's.
# libvirtd runs swtpm_setup as tss when that user exists at the daemon's start, else as
# root: a libvirtd started before swtpm-tools was installed (it creates tss) makes a CA
# owned by root, and once libvirtd restarts every TPM domain fails to start ("Could not
# run '/usr/bin/swtpm_setup'"; the swtpm log: "Need read/write rights on
# /var/lib/swtpm-localca/.lock.swtpm-localca for user tss"). Done before the early exit.
localca=/var/lib/swtpm-localca
if [ "$(id -u)" -eq 0 ] && [ -d "$localca" ] && getent passwd tss >/dev/null; then
    find "$localca" -mindepth 1 ! -user tss -exec chown -h tss:tss {} +
    if [ "$(stat -c %U "$localca")" != tss ]; then
        chown tss:root "$localca"  # what swtpm-tools' postinst makes, mode 0750
        chmod 0750 "$localca"
    fi
fi
if virsh -c qemu:///system version >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "libvirtd-up: libvirtd is not running and only root can start it" >&2
    exit 1
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl start libvirtd.service || systemctl start virtqemud.socket
else
    pgrep -x virtlogd >/dev/null || virtlogd -d
    if command -v tini >/dev/null 2>&1; then
        # libvirt's destroy waits until the QEMU process is gone, zombie included, and a
        # guest's QEMU is an orphan reaped by PID 1. systemd reaps at once; the init of
        # some sandboxes (this project's machines among them) only every 2 s, which made
        # every destroy take 1.2-2 s. tini -s adopts the orphans and reaps them at once.
        mkdir -p /var/log/libvirt
        setsid tini -s -- libvirtd </dev/null >>/var/log/libvirt/libvirtd.log 2>&1 &
    else
        libvirtd -d
    fi
fi
for _ in $(seq 1 100); do
    if virsh -c qemu:///system version >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.1
done
echo "libvirtd-up: libvirtd did not answer on qemu:///system within 10 s" >&2
exit 1
