#!/usr/bin/env bash
# Builds the nested host (L1) images into DIR:
#   DIR/vmlinuz      the L1 kernel (the pinned Debian kernel)
#   DIR/initrd.img   the L1 initramfs: busybox, kvm/kvm-amd and their deps,
#                    vfio-pci and vfio_iommu_type1 (for the passthrough
#                    devices of run.sh --passthrough), minivmm and its
#                    libraries, the L2 kernel (/l2/vmlinuz), the L2
#                    initramfs (/l2/initrd.img), the scenarios and
#                    /usr/bin/vfio-probe (tools/vfio-probe.c, built static
#                    with the C compiler that links Rust programs).
# Usage: resources/nested-host/build.sh --minivmm PATH --out DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
res="$(dirname "$here")"
# shellcheck source=resources/lib.sh
. "$res/lib.sh"

minivmm="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minivmm) minivmm="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) die "usage: $0 --minivmm PATH --out DIR" ;;
    esac
done
if [ -z "$minivmm" ] || [ -z "$out" ]; then
    die "usage: $0 --minivmm PATH --out DIR"
fi
[ -x "$minivmm" ] || die "minivmm binary not found: $minivmm (build it: cargo build --release -p vmm)"

ver="$MINIVMM_KERNEL_VERSION"
kroot="$("$res/guest-kernel.sh")"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

"$res/guest-initramfs.sh" "$out/l2-initrd.img"

log "building the L1 initramfs $out/initrd.img"
mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,l2,scenarios}
install_busybox "$root"
install -m 0755 "$here/init" "$root/init"
cp "$here"/scenarios/*.sh "$here"/scenarios/*.inc "$root/scenarios/"
# vfio-pci and vfio_iommu_type1 are modules in the pinned kernel
# (CONFIG_VFIO=m); copy_modules skips any that a kernel builds in.
copy_modules "$kroot" "$ver" "$root" kvm-amd vfio-pci vfio_iommu_type1
copy_binary "$minivmm" "$root" /usr/bin/minivmm
command -v "${CC:-cc}" >/dev/null || die "no C compiler (${CC:-cc}) for tools/vfio-probe.c (install gcc)"
"${CC:-cc}" -static -Os -s -Wall -o "$root/usr/bin/vfio-probe" "$here/tools/vfio-probe.c"
cp "$kroot/boot/vmlinuz-$ver" "$root/l2/vmlinuz"
cp "$out/l2-initrd.img" "$root/l2/initrd.img"
pack_cpio "$root" "$out/initrd.img"
cp "$kroot/boot/vmlinuz-$ver" "$out/vmlinuz"
log "L1 images ready in $out"
