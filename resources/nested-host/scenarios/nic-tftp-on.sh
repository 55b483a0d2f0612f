# L1 scenario nic-tftp-on: L1's e1000e assigned to L2 behind minivmm's
# virtio-iommu (guest MAP/UNMAP shadowed into L1's IOMMU). Expected rc: 0.
. /scenarios/nic-tftp.inc
run_nic_tftp on
