# L1 scenario pt-disk-off: L1's virtio-blk-pci assigned to L2 without the
# virtio-iommu (all guest RAM mapped for its DMA). Expected rc: 0.
. /scenarios/pt-disk.inc
run_pt_disk off ""
