# L1 scenario edu-msi: L1's edu device, which has MSI but no MSI-X, assigned
# to L2 behind minivmm's virtio-iommu; its MSIs must reach L2 (the edu-msi
# guest scenario). Expected rc: 0.
. /scenarios/vfio.inc
edu="$(vfio_bdf edu)" || { echo "edu-msi: no edu passthrough device"; exit 1; }
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --vfio "$edu,iommu=on" \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=edu-msi"
