#!/usr/bin/env bash
# Builds the nested host (L1) images into DIR:
#   DIR/vmlinuz      the L1 kernel (the pinned Debian kernel)
#   DIR/initrd.img   the L1 initramfs: busybox, kvm/kvm-amd and their deps,
#                    vfio-pci and vfio_iommu_type1 (for the passthrough
#                    devices of run.sh --passthrough), dm-mod, loop and
#                    dmsetup (failing disks for the fault-injection
#                    scenarios), minivmm and its
#                    libraries, the L2 kernel (/l2/vmlinuz), the L2
#                    initramfs (/l2/initrd.img), the scenarios and
#                    /usr/bin/vfio-probe (tools/vfio-probe.c, built static
#                    with the C compiler that links Rust programs).
# With --with-qemu the initramfs also carries this host's
# qemu-system-x86_64 (/usr/bin, with its libraries and the firmware files
# it needs for `-M q35 -nodefaults -kernel`: SeaBIOS bios-256k.bin,
# linuxboot_dma.bin, kvmvapic.bin), so an L1 scenario can run the same L2
# under QEMU/KVM for comparison (scenarios/maplat.sh); with --arch aarch64
# it is Debian's arm64 qemu-system-aarch64 with its libraries
# (l1-qemu-aarch64.sh). Only the map_latency test and the nested benchmark
# suite build that variant; the default image stays small.
# With --with-fio the initramfs also carries a second L2 initramfs,
# /l2/initrd-fio.img: the L2 image with Debian's fio and its libraries
# (guest-initramfs.sh --with-fio), for the benchmark scenario bench-blk.
# Every image carries /usr/bin/vfio-maplat (resources/guest/tools/
# vfio-maplat.c, static), so that the maplat scenario can time L1's own
# VFIO map/unmap on L1's IOMMU (the floor).
# With --arch aarch64 everything is arm64's: the Debian arm64 kernel (KVM
# built in, so no kvm module), an arm64 busybox, tools built with
# aarch64-linux-gnu-gcc, and the aarch64 minivmm (statically linked).
# Usage: resources/nested-host/build.sh --minivmm PATH --out DIR [--with-qemu]
#          [--with-fio] [--arch x86_64|aarch64]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
res="$(dirname "$here")"
# shellcheck source=resources/lib.sh
. "$res/lib.sh"

minivmm="" out="" with_qemu=no with_fio=no
while [ $# -gt 0 ]; do
    case "$1" in
        --minivmm) minivmm="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --with-qemu) with_qemu=yes; shift ;;
        --with-fio) with_fio=yes; shift ;;
        --arch) use_arch "$2"; shift 2 ;;
        *) die "usage: $0 --minivmm PATH --out DIR [--with-qemu] [--with-fio] [--arch x86_64|aarch64]" ;;
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
# (CONFIG_VFIO=m); copy_modules skips any that a kernel builds in. arm64's
# KVM is built in. dm-mod and loop serve the fault-injection scenarios
# (x86 only).
l1_modules=(vfio-pci vfio_iommu_type1)
[ "$MINIVMM_ARCH" != x86_64 ] || l1_modules=(kvm-amd "${l1_modules[@]}" dm-mod loop)
copy_modules "$kroot" "$ver" "$root" "${l1_modules[@]}"
copy_binary "$minivmm" "$root" /usr/bin/minivmm
if [ "$MINIVMM_ARCH" = x86_64 ]; then
    # curl drives minivmm's API socket in the API scenarios (a client no one
    # on the project wrote; x86 only, like the API tests); dmsetup builds
    # the failing disks of the fault-injection scenarios.
    curl="$(command -v curl)" || die "no curl on this host (resources/host-packages.sh installs it)"
    copy_binary "$curl" "$root" /usr/bin/curl
    dmsetup="$(command -v dmsetup)" || die "no dmsetup on this host (resources/host-packages.sh installs it)"
    copy_binary "$dmsetup" "$root" /usr/sbin/dmsetup
fi
cc="$MINIVMM_CC"
command -v "$cc" >/dev/null || die "no C compiler ($cc) for tools/vfio-probe.c (install gcc, or run resources/host-packages.sh for the arm64 one)"
"$cc" -static -Os -s -Wall -I "$res/tools" -o "$root/usr/bin/vfio-probe" "$here/tools/vfio-probe.c"
"$cc" -static -O2 -s -Wall -I "$res/tools" -o "$root/usr/bin/vfio-maplat" "$res/guest/tools/vfio-maplat.c"
if [ "$with_qemu" = yes ] && [ "$MINIVMM_ARCH" = aarch64 ]; then
    # Debian's arm64 QEMU (7.2) and its libraries, resolved with readelf.
    sysroot="$("$res/l1-qemu-aarch64.sh")"
    copy_foreign_binary "$sysroot/usr/bin/qemu-system-aarch64" "$sysroot" "$root" /usr/bin/qemu-system-aarch64
    log "the L1 initramfs carries Debian's arm64 qemu-system-aarch64"
elif [ "$with_qemu" = yes ]; then
    qemu="$(command -v qemu-system-x86_64)" || die "--with-qemu: no qemu-system-x86_64 on this host"
    copy_binary "$qemu" "$root" /usr/bin/qemu-system-x86_64
    # Debian's QEMU finds firmware in /usr/share/qemu and /usr/share/seabios.
    for fw in /usr/share/seabios/bios-256k.bin /usr/share/qemu/linuxboot_dma.bin \
        /usr/share/qemu/kvmvapic.bin; do
        [ -f "$fw" ] || die "--with-qemu: missing QEMU firmware $fw"
        install -D -m 0644 "$(readlink -f "$fw")" "$root$fw"
    done
    log "the L1 initramfs carries $("$qemu" --version | head -n1)"
fi
cp "$kroot/boot/vmlinuz-$ver" "$root/l2/vmlinuz"
cp "$out/l2-initrd.img" "$root/l2/initrd.img"
if [ "$with_fio" = yes ]; then
    "$res/guest-initramfs.sh" --with-fio "$out/l2-initrd-fio.img"
    cp "$out/l2-initrd-fio.img" "$root/l2/initrd-fio.img"
fi
pack_cpio "$root" "$out/initrd.img"
cp "$kroot/boot/vmlinuz-$ver" "$out/vmlinuz"
log "L1 images ready in $out"
