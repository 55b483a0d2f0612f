# L1 scenario maplat: guest-side DMA map+unmap latency on a passed-through
# device (L1's edu, run.sh --passthrough edu, on an emulated host IOMMU),
# measured in this one L1 boot under minivmm and under QEMU's virtio-iommu
# with the same L2 kernel and initramfs (1 vCPU, 512 MiB each):
#   minivmm  minivmm --cpus 1 --vfio EDU,iommu=on, label minivmm
#   qemu     qemu-system-x86_64 -accel kvm -M q35 (arm64 L1:
#            qemu-system-aarch64 -accel kvm -M virt,gic-version=3) with
#            virtio-iommu-pci and vfio-pci,host=EDU, label qemu (only when
#            the L1 image carries QEMU, build.sh --with-qemu; otherwise it
#            prints `MINIVMM-MAPLAT-SKIP vmm=qemu reason=...`)
# each running the L2 scenario maplat, which prints
# `MINIVMM-MAPLAT vmm=LABEL size=... p50_ns=...` lines. After each VMM:
# `MINIVMM-MAPLAT-VMM vmm=LABEL rc=N seconds=S` (S: L1 wall time from
# starting the VMM to its exit). L1's command line may carry
#   minivmm.maplat_iters=A,B,C     iterations for 4K, 64K, 2M (default 2000,2000,1000)
#   minivmm.maplat_order=V,V,...   which VMMs run, in order (default minivmm,qemu;
#                                  minivmm-nopoll is minivmm with --iommu-poll-us 0;
#                                  a name may repeat, one trial per run; floor is
#                                  no VMM: vfio-maplat in L1 itself on the edu and
#                                  L1's own IOMMU, the floor of the nested
#                                  benchmark suite, label floor)
# Expected rc: 0 (every VMM that ran exited 0).
. /scenarios/vfio.inc
edu="$(vfio_bdf edu)" || { echo "maplat: no edu passthrough device"; exit 1; }
iters="$(l1_cmdline_arg minivmm.maplat_iters || echo 2000,2000,1000)"
order="$(l1_cmdline_arg minivmm.maplat_order || echo minivmm,qemu)"
l2_cmdline="console=ttyS0 quiet panic=-1 minivmm.test=maplat minivmm.maplat_iters=$iters"

# run_minivmm LABEL [OPTIONS]: minivmm with OPTIONS, its results labelled LABEL.
run_minivmm() {
    label="$1"
    shift
    # Its counters (devices/src/perf.rs) land in this console at exit.
    MINIVMM_LOG=info minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --cpus 1 --memory 512M "$@" \
        --vfio "$edu,iommu=on" --cmdline "$l2_cmdline minivmm.maplat_vmm=$label"
}

# The edu device is bound to vfio-pci in L1 and free again once the previous
# VMM exited. No option ROM for it (romfile=), no default devices; the L2
# console is QEMU's stdout, this scenario's console.
run_qemu() {
    if [ "$(uname -m)" = aarch64 ]; then
        # QEMU's virt: the console is its PL011; no firmware with -kernel.
        qemu-system-aarch64 -accel kvm -M virt,gic-version=3 -cpu host -smp 1 -m 512M \
            -nodefaults -display none -no-reboot -net none \
            -chardev stdio,id=con,signal=off -serial chardev:con -monitor none \
            -kernel /l2/vmlinuz -initrd /l2/initrd.img \
            -append "$l2_cmdline console=ttyAMA0 minivmm.maplat_vmm=qemu" \
            -device virtio-iommu-pci \
            -device "vfio-pci,host=$edu,romfile="
        return
    fi
    qemu-system-x86_64 -accel kvm -M q35 -cpu host -smp 1 -m 512M \
        -nodefaults -vga none -display none -no-reboot -net none \
        -chardev stdio,id=con,signal=off -serial chardev:con -monitor none \
        -bios /usr/share/seabios/bios-256k.bin \
        -kernel /l2/vmlinuz -initrd /l2/initrd.img \
        -append "$l2_cmdline minivmm.maplat_vmm=qemu" \
        -device virtio-iommu-pci \
        -device "vfio-pci,host=$edu,romfile="
}

status=0
qemu="qemu-system-$(uname -m)"
for vmm in $(echo "$order" | tr ',' ' '); do
    read -r started _ </proc/uptime
    case "$vmm" in
        minivmm) run_minivmm minivmm ;;
        minivmm-nopoll) run_minivmm minivmm-nopoll --iommu-poll-us 0 ;;
        floor)
            # The guest tool, run on L1's own VFIO: one 2 MiB huge page for
            # its buffer, as in L2.
            echo 1 >/proc/sys/vm/nr_hugepages 2>/dev/null || true
            group="$(awk -v bdf="$edu" '$1 == bdf { print $3; exit }' /run/minivmm/vfio)"
            # shellcheck disable=SC2046
            vfio-maplat floor "$group" "$edu" $(echo "$iters" | tr ',' ' ')
            ;;
        qemu)
            if ! command -v "$qemu" >/dev/null; then
                echo "MINIVMM-MAPLAT-SKIP vmm=qemu reason=no-qemu-in-L1 (build.sh --with-qemu)"
                continue
            fi
            run_qemu
            ;;
        *) echo "maplat: unknown VMM $vmm (minivmm, minivmm-nopoll, qemu or floor)"; false ;;
    esac
    rc=$?
    read -r ended _ </proc/uptime
    echo "MINIVMM-MAPLAT-VMM vmm=$vmm rc=$rc seconds=$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.1f", b - a }')"
    [ "$rc" -eq 0 ] || status=1
done
exit "$status"
