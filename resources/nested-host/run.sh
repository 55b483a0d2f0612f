#!/usr/bin/env bash
# Boots the nested host (L1) under QEMU TCG with the images from build.sh.
# The L1 serial console is this script's stdin/stdout.
# Usage: resources/nested-host/run.sh --images DIR [--mode test|demo]
#          [--scenarios a,b,c] [--timeout SECS] [--smp N] [--memory SIZE]
#          [--scenario-timeout SECS] [--iommu none|intel|intel-nointremap|amd]
#          [--passthrough DEV]... [--append WORDS] [--l0 NAME]
#          [--arch x86_64|aarch64]
# Both modes hold the lock $MINIVMM_NESTED_LOCK (default
# /tmp/minivmm-nested.lock) while QEMU runs, so that nested hosts never
# share the machine's cores. Test mode runs QEMU under `timeout` (default
# 900 s); demo mode keeps the terminal in the foreground and has no time
# limit.
#
# --l0 picks the QEMU that runs L1 (see l0_qemu in lib.sh: qemu7.2,
# qemu7.2-single, qemu10, qemu10-single; default: $MINIVMM_L0 or the
# project's default, which for an emulated x86 IOMMU is QEMU 7.2, see
# lib.sh).
# L1's kernel prints without timestamps (printk.time=0),
# so that in the console a kernel line with a `[ seconds]` prefix is L2's.
#
# --arch aarch64 boots an arm64 L1 (images from build.sh --arch aarch64)
# under qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 with
# -cpu max,pauth-impdef=on (L1's KVM runs in VHE mode); its console is the
# PL011 (ttyAMA0) and its default L0 is QEMU 10. Its --iommu is smmuv3 (the
# default for aarch64: -M virt,iommu=smmuv3) or none.
#
# --iommu gives L1 an emulated host IOMMU (default none: no vIOMMU):
#   intel  -M q35,kernel-irqchip=split -device intel-iommu,intremap=on,
#          caching-mode=on, and intel_iommu=on on L1's command line
#   amd    -M q35,kernel-irqchip=split -device amd-iommu,intremap=on
#          (the AMD IOMMU is on by default when the firmware lists it)
# --passthrough adds a device to L1 for minivmm to pass through to L2
# (repeatable); L1's /init binds it to vfio-pci. Devices sit on L1's root
# bus at 0000:00:03.0, 0000:00:04.0, ... in the order given, and the list
# goes to L1 as minivmm.vfio=BDF,BDF. DEV is one of
#   virtio-blk:IMAGE   virtio-blk-pci (modern only, iommu_platform=on) on
#                      the raw image file IMAGE (which must exist), with
#                      serial=<IMAGE's file name>
#   e1000e[:DIR]       e1000e on a QEMU user-mode network (L1's view:
#                      10.0.2.0/24, gateway/DHCP/TFTP server 10.0.2.2);
#                      with DIR, the TFTP server serves DIR
#   edu                QEMU's edu device (DMA engine + MSI)
# --append adds words to L1's kernel command line.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/../lib.sh"

images="" mode=test scenarios="" limit=900 smp=4 memory=3G scenario_timeout=300
iommu=default extra_append="" passthrough=() l0=default arch=x86_64
while [ $# -gt 0 ]; do
    case "$1" in
        --images) images="$2"; shift 2 ;;
        --mode) mode="$2"; shift 2 ;;
        --scenarios) scenarios="$2"; shift 2 ;;
        --timeout) limit="$2"; shift 2 ;;
        --smp) smp="$2"; shift 2 ;;
        --memory) memory="$2"; shift 2 ;;
        --scenario-timeout) scenario_timeout="$2"; shift 2 ;;
        --iommu) iommu="$2"; shift 2 ;;
        --passthrough) passthrough+=("$2"); shift 2 ;;
        --append) extra_append="$extra_append $2"; shift 2 ;;
        --l0) l0="$2"; shift 2 ;;
        --arch) arch="$2"; shift 2 ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
[ -n "$images" ] || die "--images DIR is required"
for f in vmlinuz initrd.img; do
    [ -f "$images/$f" ] || die "missing $images/$f (run resources/nested-host/build.sh)"
done

console=ttyS0
[ "$arch" != aarch64 ] || console=ttyAMA0
append="console=$console quiet panic=-1 printk.time=0 minivmm.mode=$mode minivmm.scenario_timeout=$scenario_timeout"
[ -z "$scenarios" ] || append="$append minivmm.scenarios=$scenarios"

machine=(-M q35)
cpu=(-cpu max)
devices=()
case "$arch:$iommu" in
    x86_64:*) [ "$iommu" != default ] || iommu=none ;;
    aarch64:default | aarch64:smmuv3)
        iommu=smmuv3
        machine=(-M virt,virtualization=on,gic-version=3,iommu=smmuv3)
        cpu=(-cpu max,pauth-impdef=on)
        ;;
    aarch64:none)
        machine=(-M virt,virtualization=on,gic-version=3)
        cpu=(-cpu max,pauth-impdef=on)
        ;;
    aarch64:*) die "--iommu for aarch64 must be smmuv3 or none (got $iommu)" ;;
    *) die "--arch must be x86_64 or aarch64 (got $arch)" ;;
esac
[ "$arch" = aarch64 ] || case "$iommu" in
    none) ;;
    intel)
        machine=(-M "q35,kernel-irqchip=split")
        devices+=(-device "intel-iommu,intremap=on,caching-mode=on")
        append="$append intel_iommu=on"
        ;;
    intel-nointremap)
        devices+=(-device "intel-iommu,intremap=off,caching-mode=on")
        append="$append intel_iommu=on"
        ;;
    amd)
        machine=(-M "q35,kernel-irqchip=split")
        devices+=(-device "amd-iommu,intremap=on")
        ;;
    *) die "--iommu must be none, intel, intel-nointremap or amd (got $iommu)" ;;
esac

slot=3 bdfs="" n=0
for dev in "${passthrough[@]}"; do
    addr="$(printf '%02x.0' "$slot")"
    case "$dev" in
        virtio-blk:*)
            image="${dev#virtio-blk:}"
            [ -f "$image" ] || die "--passthrough $dev: no image file $image"
            devices+=(-drive "file=$image,if=none,format=raw,cache=unsafe,id=pt$n"
                -device "virtio-blk-pci,drive=pt$n,disable-legacy=on,iommu_platform=on,serial=${image##*/},addr=$addr")
            ;;
        e1000e | e1000e:*)
            netdev="user,id=pt$n"
            if [ "$dev" != e1000e ]; then
                tftp="${dev#e1000e:}"
                [ -d "$tftp" ] || die "--passthrough $dev: no directory $tftp"
                netdev="$netdev,tftp=$(cd "$tftp" && pwd)"
            fi
            devices+=(-netdev "$netdev" -device "e1000e,netdev=pt$n,romfile=,addr=$addr")
            ;;
        edu) devices+=(-device "edu,addr=$addr") ;;
        *) die "unknown --passthrough device $dev (virtio-blk:IMAGE, e1000e[:DIR] or edu)" ;;
    esac
    bdfs="$bdfs,0000:00:$addr"
    slot=$((slot + 1))
    n=$((n + 1))
done
[ -z "$bdfs" ] || append="$append minivmm.vfio=${bdfs#,}"
append="$append$extra_append"

l0_qemu "$l0" "$arch" "$iommu"
# -nodefaults: no default VGA, floppy or CD-ROM (probing QEMU 10's empty
# AHCI CD-ROM costs SeaBIOS a 32 s timeout); the console is the serial port.
qemu=("${L0_QEMU[@]}" "${cpu[@]}" "${machine[@]}" -smp "$smp" -m "$memory"
    -nodefaults -display none -serial mon:stdio -no-reboot -nic none -kernel "$images/vmlinuz" -initrd "$images/initrd.img"
    "${devices[@]}" -append "$append")

# QEMU inherits the locked descriptor: the lock lasts as long as it runs.
exec 9>"${MINIVMM_NESTED_LOCK:-/tmp/minivmm-nested.lock}"
if ! flock -n 9; then
    log "waiting for another nested host on this machine to finish"
    flock 9 || die "could not take the nested-host lock"
fi
if [ "$mode" = demo ]; then
    log "booting the nested host (quit QEMU with Ctrl-a x)"
    exec "${qemu[@]}"
fi
log "booting the nested host: arch=$arch l0=$L0_NAME scenarios=$scenarios timeout=${limit}s iommu=$iommu passthrough=${passthrough[*]:-none}"
exec timeout -s KILL "$limit" "${qemu[@]}" </dev/null
