# The demo's tour of the L2 guest, printed before its shell when the kernel
# command line has minivmm.demo=1 (sourced by /init as
# /etc/minivmm/demo.sh): the ACPI VIOT table that describes the
# virtio-iommu, the assigned NIC with its DHCP lease, the disk, and the
# IOMMU groups with their reserved regions (what minivmm's PROBE reported).

. /etc/minivmm/lib.sh

echo
echo "--- inside the guest (L2) ---"
viot=/sys/firmware/acpi/tables/VIOT
if [ -e "$viot" ]; then
    echo "ACPI VIOT table: present, $(wc -c <"$viot") bytes (the virtio-iommu and the endpoints behind it)"
else
    echo "ACPI VIOT table: missing"
fi

# driver_of DEVDIR: the name of the driver bound to a device, or none.
driver_of() {
    link="$(readlink -f "$1/driver" 2>/dev/null)"
    if [ -n "$link" ]; then echo "${link##*/}"; else echo none; fi
}

if nic_up e1000e >/dev/null 2>&1; then
    nic_dev="$(readlink -f "/sys/class/net/$NIC_IFACE/device")"
    echo "NIC $NIC_IFACE: e1000e at ${nic_dev##*/}, assigned through VFIO; DHCP lease $NIC_IP from 10.0.2.2"
else
    echo "NIC: $NIC_ERROR"
fi
for sysdir in /sys/block/vd*; do
    [ -e "$sysdir" ] || continue
    disk_dev="$(readlink -f "$sysdir/device/..")"
    echo "disk ${sysdir##*/}: $(($(cat "$sysdir/size") / 2048)) MiB, virtio-blk at ${disk_dev##*/}"
done

echo "IOMMU groups (each endpoint behind minivmm's virtio-iommu):"
for group in /sys/kernel/iommu_groups/*; do
    [ -d "$group" ] || continue
    devices=""
    for dev in "$group"/devices/*; do
        devices="$devices ${dev##*/} ($(driver_of "$dev"))"
    done
    echo "  group ${group##*/}, domain $(cat "$group/type"):$devices"
    while read -r start end type; do
        echo "    reserved $start-$end $type"
    done <"$group/reserved_regions"
done
echo
