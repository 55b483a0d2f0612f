# L1 scenario pt-disk-lazy: as pt-disk-strict with lazy invalidation.
# Expected rc: 0.
. /scenarios/pt-disk.inc
run_pt_disk on "iommu.strict=0"
