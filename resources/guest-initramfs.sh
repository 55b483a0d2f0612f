#!/usr/bin/env bash
# Builds the L2 guest initramfs: a static busybox, resources/guest/init as
# /init, the scenarios from resources/guest/scenarios, the kernel modules
# the guest loads at boot (listed in /etc/modules), the modules scenarios
# load themselves (modprobe NAME: e1000e and vfio-pci for passthrough
# devices), busybox udhcpc's script (/etc/udhcpc/default.script) and the
# static tools from resources/guest/tools (/usr/bin/NAME).
# For MINIVMM_ARCH's guests (x86_64 by default, aarch64: arm64's busybox,
# kernel modules and C compiler).
# With --with-fio it also carries Debian's fio (/usr/bin/fio, from
# l2-fio.sh) and the shared libraries it needs, at their Debian paths, for
# the nested benchmark suite (benches/nested/; about 80 MB unpacked, so only
# that suite's image has it).
# Usage:
#   resources/guest-initramfs.sh [--with-fio] OUT.cpio.gz
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=resources/lib.sh
. "$here/lib.sh"

with_fio=no
if [ "${1:-}" = --with-fio ]; then
    with_fio=yes
    shift
fi
[ $# -eq 1 ] || die "usage: $0 [--with-fio] OUT.cpio.gz"
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
# Modules copied in but loaded only by the scenarios that need them (they
# would slow every boot): the NIC minivmm passes through (e1000e) and VFIO
# for in-guest userspace drivers.
on_demand_modules=(
    "CONFIG_E1000E e1000e"
    "CONFIG_VFIO vfio"
    "CONFIG_VFIO_PCI vfio-pci"
    "CONFIG_VFIO_IOMMU_TYPE1 vfio_iommu_type1"
)

log "building the L2 initramfs $out"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,scenarios}
install_busybox "$root"
install -m 0755 "$here/guest/init" "$root/init"
cp "$here"/guest/scenarios/*.sh "$root/scenarios/"
install -D -m 0755 "$here/guest/udhcpc.script" "$root/etc/udhcpc/default.script"
install -D -m 0644 "$here/guest/lib.sh" "$root/etc/minivmm/lib.sh"
install -m 0644 "$here/guest/demo.sh" "$root/etc/minivmm/demo.sh"
# Static helpers the scenarios run (guest/tools/NAME.c -> /usr/bin/NAME;
# vfio-maplat for the maplat scenario).
for tool in "$here"/guest/tools/*.c; do
    [ -e "$tool" ] || continue
    command -v "$MINIVMM_CC" >/dev/null || die "no C compiler ($MINIVMM_CC) for $tool (install gcc)"
    "$MINIVMM_CC" -static -O2 -s -Wall -I "$here/tools" -o "$root/usr/bin/$(basename "$tool" .c)" "$tool"
done

# built_as_modules "SYMBOL module"...: the modules whose SYMBOL is =m in the
# kernel's config (a built-in driver needs nothing), one per line.
built_as_modules() {
    local entry symbol module
    for entry in "$@"; do
        read -r symbol module <<<"$entry"
        if grep -qx "$symbol=m" "$config"; then
            echo "$module"
        fi
    done
}
mapfile -t modules < <(built_as_modules "${wanted_modules[@]}")
mapfile -t extra < <(built_as_modules "${on_demand_modules[@]}")
: >"$root/etc/modules"
if [ "${#modules[@]}" -gt 0 ] || [ "${#extra[@]}" -gt 0 ]; then
    copy_modules "$kroot" "$ver" "$root" "${modules[@]}" "${extra[@]}"
fi
if [ "${#modules[@]}" -gt 0 ]; then
    printf '%s\n' "${modules[@]}" >"$root/etc/modules"
fi
if [ "$with_fio" = yes ]; then
    fio_root="$("$here/l2-fio.sh")"
    copy_foreign_binary "$fio_root/usr/bin/fio" "$fio_root" "$root" /usr/bin/fio
fi
pack_cpio "$root" "$out"
