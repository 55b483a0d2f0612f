# L1 scenario vfio-host: the host side of VFIO passthrough, without running
# minivmm. Needs passthrough devices (run.sh --passthrough) and a host IOMMU
# (run.sh --iommu intel|amd). Checks that /dev/vfio/vfio exists and that every
# passthrough device is bound to vfio-pci, alone in its IOMMU group (no other
# device in it, no group shared with another passthrough device) and has its
# group's /dev/vfio/N. Prints per device
#   vfio-host: bdf=B kind=K group=N members=M driver=D dev=yes|no regions=R
# (R: the group's reserved regions joined with ';') and, for the IOMMU,
#   vfio-host: iommu=NAME irq_remap=yes|no
# (NAME: the entries of /sys/class/iommu; irq_remap: the kernel enabled
# interrupt remapping, which vfio_iommu_type1 needs to accept a container),
# then runs vfio-probe on each device (a type1v2 container as a VMM sets it
# up, its IOVA ranges, a DMA map/unmap; see tools/vfio-probe.c), which
# prints a MINIVMM-L1-VFIO-PROBE line. Exit status 0 when every check passed.
status=0
problem() {
    echo "vfio-host: FAIL $*"
    status=1
}

[ -c /dev/vfio/vfio ] || problem "no /dev/vfio/vfio"
[ -s /run/minivmm/vfio ] || problem "no passthrough devices (minivmm.vfio= is empty)"

iommus="$(ls /sys/class/iommu 2>/dev/null | tr '\n' ',')"
iommus="${iommus%,}"
if dmesg | grep -q -E 'Enabled IRQ remapping|Interrupt remapping enabled'; then
    irq_remap=yes
else
    irq_remap=no
fi
echo "vfio-host: iommu=${iommus:-none} irq_remap=$irq_remap"

groups=" "
while read -r bdf kind group; do
    dev="/sys/bus/pci/devices/$bdf"
    driver=none
    [ -e "$dev/driver" ] && driver="$(basename "$(readlink "$dev/driver")")"
    members=0
    regions=""
    node=no
    if [ "$group" != none ]; then
        members="$(ls "/sys/kernel/iommu_groups/$group/devices" | wc -l)"
        regions="$(tr '\n' ';' <"/sys/kernel/iommu_groups/$group/reserved_regions")"
        regions="${regions%;}"
        [ -c "/dev/vfio/$group" ] && node=yes
    fi
    echo "vfio-host: bdf=$bdf kind=$kind group=$group members=$members driver=$driver dev=$node regions=$regions"
    [ "$driver" = vfio-pci ] || problem "$bdf: bound to $driver, not vfio-pci"
    [ "$group" != none ] || problem "$bdf: in no IOMMU group"
    [ "$members" = 1 ] || problem "$bdf: group $group has $members devices"
    [ "$node" = yes ] || problem "$bdf: no /dev/vfio/$group"
    case "$groups" in
        *" $group "*) problem "$bdf: group $group is shared with another passthrough device" ;;
    esac
    groups="$groups$group "
done </run/minivmm/vfio

while read -r bdf kind group; do
    [ "$group" != none ] || continue
    vfio-probe "$group" "$bdf" || problem "$bdf: vfio-probe failed"
done </run/minivmm/vfio
exit "$status"
