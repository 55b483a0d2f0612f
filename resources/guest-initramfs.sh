#!/usr/bin/env bash
# Builds the L2 guest initramfs: a static busybox, resources/guest/init as
# /init, the scenarios from resources/guest/scenarios, and the kernel modules
# the guest loads at boot (listed in /etc/modules). Usage:
#   resources/guest-initramfs.sh OUT.cpio.gz
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=resources/lib.sh
. "$here/lib.sh"

[ $# -eq 1 ] || die "usage: $0 OUT.cpio.gz"
out="$1"
ver="$MINIVMM_KERNEL_VERSION"
kroot="$("$here/guest-kernel.sh")"
config="$kroot/boot/config-$ver"

# Modules the guest loads when the kernel builds them as modules, with the
# config symbol that says so. A built-in (=y) driver needs nothing.
wanted_modules=(
    "CONFIG_PVPANIC_MMIO pvpanic-mmio"
    "CONFIG_VIRTIO_IOMMU virtio_iommu"
    "CONFIG_VIRTIO_BLK virtio_blk"
)

log "building the L2 initramfs $out"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,scenarios}
install_busybox "$root"
install -m 0755 "$here/guest/init" "$root/init"
cp "$here"/guest/scenarios/*.sh "$root/scenarios/"

modules=()
for entry in "${wanted_modules[@]}"; do
    read -r symbol module <<<"$entry"
    if grep -qx "$symbol=m" "$config"; then
        modules+=("$module")
    fi
done
: >"$root/etc/modules"
if [ "${#modules[@]}" -gt 0 ]; then
    copy_modules "$kroot" "$ver" "$root" "${modules[@]}"
    printf '%s\n' "${modules[@]}" >"$root/etc/modules"
fi
pack_cpio "$root" "$out"
