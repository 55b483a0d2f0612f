# L1 scenario no-intremap: on a host IOMMU without interrupt remapping,
# assigning a device must be refused with one error line that explains the
# risk and the host setting that accepts it. Prints
#   MINIVMM-REFUSED rc=N lines=N msg=...
. /scenarios/vfio.inc
dev="$(vfio_bdf e1000e)" || dev="$(vfio_bdf virtio-blk)" || { echo "no-intremap: no passthrough device"; exit 1; }
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --vfio "$dev" >/tmp/refused.out 2>/tmp/refused.err
rc=$?
echo "MINIVMM-REFUSED rc=$rc lines=$(wc -l </tmp/refused.err) msg=$(head -1 /tmp/refused.err)"
[ "$rc" = 1 ]
