# L1 scenario maplat: guest-side DMA map+unmap latency on a passed-through
# device (L1's edu, run.sh --passthrough edu, on an emulated host IOMMU),
# measured in this one L1 boot first under minivmm and then under QEMU's
# virtio-iommu with the same L2 kernel and initramfs:
#   1. minivmm --cpus 1 --vfio EDU,iommu=on, L2 scenario maplat, label minivmm
#   2. qemu-system-x86_64 -accel kvm -M q35 -smp 1 -m 512M with
#      virtio-iommu-pci and vfio-pci,host=EDU, the same L2 scenario, label qemu
#      (only when the L1 image carries QEMU: build.sh --with-qemu; otherwise
#      it prints `MINIVMM-MAPLAT-SKIP vmm=qemu reason=...`)
# The L2 guest prints `MINIVMM-MAPLAT vmm=LABEL size=... p50_ns=...` lines.
# After each VMM: `MINIVMM-MAPLAT-VMM vmm=LABEL rc=N`. L1's command line may
# carry minivmm.maplat_iters=A,B,C (iterations for 4K, 64K, 2M).
# Expected rc: 0 (every VMM that ran exited 0).
. /scenarios/vfio.inc
edu="$(vfio_bdf edu)" || { echo "maplat: no edu passthrough device"; exit 1; }
iters="$(l1_cmdline_arg minivmm.maplat_iters || echo 2000,2000,1000)"
l2_cmdline="console=ttyS0 quiet panic=-1 minivmm.test=maplat minivmm.maplat_iters=$iters"

minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --cpus 1 --memory 512M \
    --vfio "$edu,iommu=on" --cmdline "$l2_cmdline minivmm.maplat_vmm=minivmm"
rc_minivmm=$?
echo "MINIVMM-MAPLAT-VMM vmm=minivmm rc=$rc_minivmm"

rc_qemu=0
if command -v qemu-system-x86_64 >/dev/null; then
    # The edu device is bound to vfio-pci in L1 and free again once minivmm
    # exited. No option ROM for it (romfile=), no default devices; the L2
    # console is QEMU's stdout, this scenario's console.
    qemu-system-x86_64 -accel kvm -M q35 -cpu host -smp 1 -m 512M \
        -nodefaults -vga none -display none -no-reboot -net none \
        -chardev stdio,id=con,signal=off -serial chardev:con -monitor none \
        -bios /usr/share/seabios/bios-256k.bin \
        -kernel /l2/vmlinuz -initrd /l2/initrd.img \
        -append "$l2_cmdline minivmm.maplat_vmm=qemu" \
        -device virtio-iommu-pci \
        -device "vfio-pci,host=$edu,romfile="
    rc_qemu=$?
    echo "MINIVMM-MAPLAT-VMM vmm=qemu rc=$rc_qemu"
else
    echo "MINIVMM-MAPLAT-SKIP vmm=qemu reason=no-qemu-in-L1 (build.sh --with-qemu)"
fi
[ "$rc_minivmm" -eq 0 ] && [ "$rc_qemu" -eq 0 ]
