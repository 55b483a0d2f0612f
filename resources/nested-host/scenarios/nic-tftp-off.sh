# L1 scenario nic-tftp-off: L1's e1000e assigned to L2 without the
# virtio-iommu (all guest RAM mapped for its DMA). Expected rc: 0.
. /scenarios/nic-tftp.inc
run_nic_tftp off
