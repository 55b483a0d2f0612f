# L2 scenario pt-disk: the virtio disk passed through from L1 (VFIO) takes
# an O_DIRECT write of 8 MiB of random data at 1 MiB, reads it back and
# compares, and prints
#   MINIVMM-PTDISK dev=vdX sha256=H group=G:TYPE|none ram=A-B,C-D regions=R1;R2
# (ram: the guest's System RAM ranges from /proc/iomem)
# minivmm.pt_iommu=on|off says whether it must sit behind the virtio-iommu
# (then its group's reserved regions must list the MSI window starting at
# minivmm.msi=ADDR, default x86's 0xfee00000). The kernel log must not
# report a fault.

want_iommu="$(cmdline_arg minivmm.pt_iommu || echo off)"
msi_start="$(cmdline_arg minivmm.msi || echo 0x00000000fee00000)"
tries=0
while [ ! -e /sys/block/vda ] && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
[ -e /sys/block/vda ] || fail "no virtio disk"
dev=vda

dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
want="$(sha256sum /tmp/pattern)"
want="${want%% *}"
dd if=/tmp/pattern of=/dev/$dev bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null || fail "$dev: write failed"
got="$(dd if=/dev/$dev bs=1M skip=1 count=8 iflag=direct 2>/dev/null | sha256sum)"
got="${got%% *}"
[ "$got" = "$want" ] || fail "$dev: read back $got, wrote $want"

group=none
regions=""
link="$(readlink -f /sys/block/$dev/device/../iommu_group 2>/dev/null || true)"
if [ -n "$link" ] && [ -e "$link" ]; then
    group="${link##*/}:$(cat "$link/type" 2>/dev/null)"
    regions="$(tr ' ' '_' <"$link/reserved_regions" | tr '\n' ';')"
fi
ram="$(sed -n 's/^\([0-9a-f]*-[0-9a-f]*\) : System RAM$/\1/p' /proc/iomem | tr '\n' ',')"
echo "MINIVMM-PTDISK dev=$dev sha256=$got group=$group ram=${ram%,} regions=$regions"
case "$want_iommu" in
    on)
        [ "$group" != none ] || fail "$dev is not behind the virtio-iommu"
        echo "$regions" | grep -q "${msi_start}_0x[0-9a-f]*_msi" || fail "$dev: MSI window not reserved"
        ;;
    *) [ "$group" = none ] || fail "$dev: unexpectedly in IOMMU group $group" ;;
esac
if dmesg | grep -i -w -q fault; then
    dmesg | grep -i -w fault | head -5
    fail "the kernel log reports faults"
fi
pass "dev=$dev"
