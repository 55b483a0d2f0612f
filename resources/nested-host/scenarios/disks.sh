# L1 scenario disks: two virtio-blk disks without the IOMMU; the guest
# writes and checks a pattern on each, then the host side prints the hash of
# the same range in each image after minivmm exited (see disk-run.inc).
. /scenarios/disk-run.inc
run_with_disks "minivmm.disks=2" plain-a.img:off plain-b.img:off
