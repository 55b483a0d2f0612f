# L2 scenario disks: every virtio disk takes a write of random data (8 MiB
# at 1 MiB, O_DIRECT), reads it back and compares. For each disk it prints
#   MINIVMM-DISK serial=S dev=vdX sha256=H group=G|none msi=yes|no domain=T
# (G: its IOMMU group; msi: whether that group's reserved regions list the
# guest MSI window starting at minivmm.msi=ADDR, default x86's 0xfee00000;
# T: the group's domain type, DMA when strict, DMA-FQ when lazy). Disks
# whose serial (image file name) contains "iommu" must be in an IOMMU group
# with the MSI window; the others must not.
# minivmm.disks=N is the expected number of disks. The kernel log must not
# mention an IOMMU fault.

expect="$(cmdline_arg minivmm.disks || true)"
msi_start="$(cmdline_arg minivmm.msi || echo 0x00000000fee00000)"
[ -n "$expect" ] || fail "no minivmm.disks= on the command line"

# The virtio-iommu probe can defer the disks behind it: wait for them.
tries=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$expect" ] && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
found="$(ls -d /sys/block/vd* 2>/dev/null | wc -l)"
[ "$found" = "$expect" ] || fail "found $found virtio disks, expected $expect"

dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
want="$(sha256sum /tmp/pattern)"
want="${want%% *}"

for sysdir in /sys/block/vd*; do
    dev="${sysdir##*/}"
    serial="$(cat "$sysdir/serial" 2>/dev/null || echo unknown)"
    dd if=/tmp/pattern of="/dev/$dev" bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null ||
        fail "$dev: write failed"
    got="$(dd if="/dev/$dev" bs=1M skip=1 count=8 iflag=direct 2>/dev/null | sha256sum)"
    got="${got%% *}"
    [ "$got" = "$want" ] || fail "$dev: read back $got, wrote $want"
    group=none
    msi=no
    domain=none
    if [ -e "$sysdir/device/../iommu_group" ] || [ -e "$sysdir/device/iommu_group" ]; then
        link="$(readlink -f "$sysdir/device/../iommu_group" 2>/dev/null || readlink -f "$sysdir/device/iommu_group")"
        group="${link##*/}"
        grep -q "^$msi_start 0x[0-9a-f]* msi" "$link/reserved_regions" && msi=yes
        domain="$(cat "$link/type" 2>/dev/null || echo unknown)"
    fi
    echo "MINIVMM-DISK serial=$serial dev=$dev sha256=$got group=$group msi=$msi domain=$domain"
    case "$serial" in
        *iommu*) [ "$group" != none ] && [ "$msi" = yes ] || fail "$serial: not behind the IOMMU (group=$group msi=$msi)" ;;
        *) [ "$group" = none ] || fail "$serial: unexpectedly in IOMMU group $group" ;;
    esac
done

# virtio-iommu reports "... fault from EP N at ADDR"; match the word only
# (not "default").
if dmesg | grep -i -w -q fault; then
    dmesg | grep -i -w fault | head -5
    fail "the kernel log reports faults"
fi
pass "disks=$found"
