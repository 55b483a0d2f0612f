# L1 scenario iommu-strict: a disk behind minivmm's virtio-iommu beside one
# without it; the guest runs the IOMMU in strict mode (every unmap is
# flushed at once). Expected rc: 0.
. /scenarios/disk-run.inc
run_with_disks "minivmm.disks=2 iommu.strict=1" plain.img:off iommu.img:on
