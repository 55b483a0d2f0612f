# L1 scenario pt-disk-strict: L1's virtio-blk-pci assigned to L2 behind
# minivmm's virtio-iommu, guest IOMMU in strict mode. Expected rc: 0.
. /scenarios/pt-disk.inc
run_pt_disk on "iommu.strict=1"
