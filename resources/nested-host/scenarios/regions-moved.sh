# L1 scenario regions-moved (arm64 addresses): a --host-regions file,
# standing for another host, covers minivmm's default guest MSI doorbell
# (the ITS at the first candidate, 0x0c200000) and 16 MiB of default RAM at
# 0x50000000. `minivmm plan` shows both moved (its MSI, RAM and host region
# rows as MINIVMM-PLAN lines); L2, with L1's virtio-blk passed through
# behind the virtio-iommu under the same file, sees its IOMMU group's MSI
# window at the moved doorbell and no RAM in the covered range (the
# pt-disk guest scenario's line). Then a file covering every doorbell
# candidate is refused with one line (MINIVMM-REFUSED). Expected rc: 0.
. /scenarios/vfio.inc
disk="$(vfio_bdf virtio-blk)" || { echo "regions-moved: no virtio-blk passthrough device"; exit 1; }
printf '%s\n' "0x000000000c000000 0x000000000cffffff reserved" \
    "0x0000000050000000 0x0000000050ffffff reserved" >/tmp/hostB.regions
minivmm plan --vfio "$disk" --host-regions /tmp/hostB.regions >/tmp/plan.txt || exit 1
grep -E 'MSI$| RAM$|hostB.regions' /tmp/plan.txt | sed 's/^ */MINIVMM-PLAN /'
msi="$(awk '$NF == "MSI" { print $1; exit }' /tmp/plan.txt)"
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --vfio "$disk,iommu=on" \
    --host-regions /tmp/hostB.regions \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=pt-disk minivmm.pt_iommu=on minivmm.msi=$msi" ||
    exit $?
echo "0x000000000c000000 0x000000000fffffff reserved" >/tmp/hostC.regions
minivmm plan --vfio "$disk" --host-regions /tmp/hostC.regions >/tmp/refused.out 2>/tmp/refused.err
rc=$?
echo "MINIVMM-REFUSED rc=$rc lines=$(wc -l </tmp/refused.err) msg=$(head -1 /tmp/refused.err)"
[ "$rc" = 1 ]
