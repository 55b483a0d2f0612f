# L2 scenario api-guest: the guest of the API tests (nested-host
# scenarios api-*.sh), which drive minivmm over its socket while this guest
# runs. It waits for minivmm.disks=N virtio disks, writes 1 MiB of
# pseudo-random data at 1 MiB on each with O_DIRECT and reads it back, then
# prints
#   MINIVMM-API-GUEST ready disks=N devs=vda,... groups=G,...|none uptime=S
# and stays up (it never powers off by itself: the L1 side shuts the VM
# down through the API).

expect="$(cmdline_arg minivmm.disks || echo 0)"
tries=0
while [ "$(ls -d /sys/block/vd* 2>/dev/null | wc -l)" -lt "$expect" ] && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
found="$(ls -d /sys/block/vd* 2>/dev/null | wc -l)"
[ "$found" = "$expect" ] || fail "found $found virtio disks, expected $expect"

devs="" groups=""
dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null
for sysdir in /sys/block/vd*; do
    [ -e "$sysdir" ] || continue
    dev="${sysdir##*/}"
    dd if=/tmp/pattern of="/dev/$dev" bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null || fail "$dev: write failed"
    [ "$(dd if="/dev/$dev" bs=1M skip=1 count=1 iflag=direct 2>/dev/null | sha256sum)" = "$(sha256sum </tmp/pattern)" ] ||
        fail "$dev: read back differs"
    group=none
    link="$(readlink -f "$sysdir/device/../iommu_group" 2>/dev/null || true)"
    [ -n "$link" ] && [ -e "$link" ] && group="${link##*/}"
    devs="$devs,$dev"
    groups="$groups,$group"
done
echo "MINIVMM-API-GUEST ready disks=$found devs=${devs#,} groups=${groups#,} uptime=$(uptime_s)"
while :; do sleep 1; done
