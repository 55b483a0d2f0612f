# L1 scenario iommu-lazy: as iommu-strict, with the guest's default lazy
# (batched) IOTLB invalidation. Expected rc: 0.
. /scenarios/disk-run.inc
run_with_disks "minivmm.disks=2 iommu.strict=0" plain.img:off iommu.img:on
