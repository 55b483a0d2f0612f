# L1 scenario disks: two virtio-blk disks without the IOMMU; the guest
# writes and checks a pattern on each, then the host side prints the hash of
# the same range in each image after minivmm exited:
#   MINIVMM-HOST-DISK serial=NAME sha256=H
mkdir -p /tmp/disks
for name in plain-a.img plain-b.img; do
    dd if=/dev/zero of="/tmp/disks/$name" bs=1M count=32 2>/dev/null
done
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img \
    --disk path=/tmp/disks/plain-a.img --disk path=/tmp/disks/plain-b.img \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=disks minivmm.disks=2"
rc=$?
for image in /tmp/disks/*.img; do
    sum="$(dd if="$image" bs=1M skip=1 count=8 2>/dev/null | sha256sum)"
    echo "MINIVMM-HOST-DISK serial=${image##*/} sha256=${sum%% *}"
done
rm -rf /tmp/disks
exit "$rc"
