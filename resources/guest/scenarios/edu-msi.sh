# L2 scenario edu-msi: the passed-through edu device (1234:11e8) raises MSIs
# that must all reach guest userspace through the guest's own VFIO
# (/usr/bin/vfio-msi). The device sits behind minivmm's virtio-iommu (L2's
# VFIO needs an IOMMU group), which has no interrupt remapping, hence
# allow_unsafe_interrupts=1 in the guest.
modprobe vfio_iommu_type1 allow_unsafe_interrupts=1 || fail "could not load vfio_iommu_type1"
modprobe vfio-pci || fail "could not load vfio-pci"
bdf=""
for dev in /sys/bus/pci/devices/*; do
    if [ "$(cat "$dev/vendor")" = 0x1234 ] && [ "$(cat "$dev/device")" = 0x11e8 ]; then
        bdf="${dev##*/}"
    fi
done
[ -n "$bdf" ] || fail "no edu device"
dev="/sys/bus/pci/devices/$bdf"
echo vfio-pci >"$dev/driver_override"
echo "$bdf" >/sys/bus/pci/drivers_probe
[ -e "$dev/iommu_group" ] || fail "$bdf has no IOMMU group"
group="$(basename "$(readlink "$dev/iommu_group")")"
tries=0
while [ ! -e "/dev/vfio/$group" ] && [ "$tries" -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
vfio-msi "$group" "$bdf" 100 || {
    grep -i vfio /proc/interrupts
    fail "not every MSI arrived"
}
pass "bdf=$bdf"
