# L1 demo: the guest minivmm is for. With the e1000e that run.sh put in L1
# (bound to vfio-pci by /init) and a fresh 64 MiB disk, both behind
# minivmm's virtio-iommu: first `minivmm plan` for that VM (the guest map,
# the host's reserved regions and why each hole is there), then the L2
# guest, which shows its IOMMU view and leaves you in its shell.
. /scenarios/vfio.inc

args="--cpus 2 --memory 512M"
mkdir -p /tmp/demo
dd if=/dev/zero of=/tmp/demo/disk.img bs=1M count=64 2>/dev/null
args="$args --disk path=/tmp/demo/disk.img,iommu=on"
if nic="$(vfio_bdf e1000e)"; then
    args="$args --vfio $nic"
else
    echo "minivmm demo: no e1000e in the nested host; the guest gets only the disk"
fi

echo
echo "--- minivmm plan $args ---"
# shellcheck disable=SC2086
minivmm plan $args
echo
echo "--- minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img $args ---"
# shellcheck disable=SC2086
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img $args \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.demo=1"
