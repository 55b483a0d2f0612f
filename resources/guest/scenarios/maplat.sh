# L2 scenario maplat: DMA map+unmap latency through the guest's own VFIO on
# a passed-through device (L1's edu, vendor 0x1234 device 0x11e8, or the
# device minivmm.maplat_bdf=BDF names). Loads vfio_iommu_type1 with
# allow_unsafe_interrupts=1 (a virtio-iommu has no interrupt remapping),
# binds the device to vfio-pci and runs /usr/bin/vfio-maplat, which prints
#   MINIVMM-MAPLAT vmm=LABEL size=BYTES n=N p50_ns=.. p90_ns=.. p99_ns=.. mean_ns=..
# for 4 KiB, 64 KiB and 2 MiB. LABEL comes from minivmm.maplat_vmm= (the
# VMM running this guest: minivmm or qemu); minivmm.maplat_iters=A,B,C
# overrides the iteration counts per size. The verdict's booted= is L2's
# uptime when the scenario started (its kernel's boot time).
# Run by the L1 scenario maplat (nested-host/scenarios/maplat.sh).

booted="$(uptime_s)"
label="$(cmdline_arg minivmm.maplat_vmm || echo unknown)"
bdf="$(cmdline_arg minivmm.maplat_bdf || true)"
iters="$(cmdline_arg minivmm.maplat_iters || echo 2000,2000,1000)"

modprobe vfio_iommu_type1 allow_unsafe_interrupts=1 || fail "could not load vfio_iommu_type1"
modprobe vfio-pci || fail "could not load vfio-pci"

if [ -z "$bdf" ]; then
    for dev in /sys/bus/pci/devices/*; do
        if [ "$(cat "$dev/vendor")" = 0x1234 ] && [ "$(cat "$dev/device")" = 0x11e8 ]; then
            bdf="${dev##*/}"
            break
        fi
    done
fi
[ -n "$bdf" ] || fail "no edu device (1234:11e8) and no minivmm.maplat_bdf="
dev="/sys/bus/pci/devices/$bdf"
[ -d "$dev" ] || fail "no PCI device $bdf"

# A device no driver has probed yet may have no IOMMU group until a driver
# binds (the firmware-described IOMMU is configured at probe time), so bind
# first and look for the group after.
echo vfio-pci >"$dev/driver_override"
[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
echo "$bdf" >/sys/bus/pci/drivers_probe
driver="$(basename "$(readlink "$dev/driver" 2>/dev/null)" 2>/dev/null)"
[ -e "$dev/iommu_group" ] || fail "$bdf has no IOMMU group (driver: ${driver:-none}; no virtio-iommu in front of it?)"
group="$(basename "$(readlink "$dev/iommu_group")")"
[ "$driver" = vfio-pci ] || fail "$bdf: not bound to vfio-pci (driver: ${driver:-none})"
tries=0
while [ ! -e "/dev/vfio/$group" ] && [ "$tries" -lt 50 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
[ -e "/dev/vfio/$group" ] || fail "no /dev/vfio/$group"
echo "maplat: $label: $bdf group $group ($(cat "/sys/kernel/iommu_groups/$group/type" 2>/dev/null)), reserved: $(tr '\n' ';' <"/sys/kernel/iommu_groups/$group/reserved_regions")"

# One 2 MiB huge page for the buffer: every mapping is then physically
# contiguous, one IOMMU request per MAP_DMA/UNMAP_DMA whatever its size.
echo 1 >/proc/sys/vm/nr_hugepages 2>/dev/null || true
# shellcheck disable=SC2046
vfio-maplat "$label" "$group" "$bdf" $(echo "$iters" | tr ',' ' ') \
    || fail "vfio-maplat failed (status $?)"
pass "vmm=$label bdf=$bdf group=$group booted=$booted"
