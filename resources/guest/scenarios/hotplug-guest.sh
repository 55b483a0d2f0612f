# L2 scenario hotplug-guest: the guest of the hotplug tests (nested-host
# scenario hotplug-disk.sh), which add and remove disks through minivmm's
# API while this guest runs. It prints
#   MINIVMM-HOTPLUG-GUEST waiting slots=N,... uptime=S
# once (the hot-pluggable slots acpiphp registered), then watches
# /sys/block for virtio disks coming and going, and for each one that
# arrives prints
#   MINIVMM-HOTPLUG-GUEST usable dev=vdX uptime=S
# as soon as a first O_DIRECT read of it succeeds, then writes 1 MiB of
# pseudo-random data at 1 MiB with O_DIRECT, reads it back and prints
#   MINIVMM-HOTPLUG-GUEST checked dev=vdX bdf=B driver=D group=G|none data=ok|bad
# and for each one that leaves
#   MINIVMM-HOTPLUG-GUEST gone dev=vdX pci=absent|present
# It never powers off by itself: the L1 side shuts the VM down.

slots="$(ls /sys/bus/pci/slots 2>/dev/null | sort -n | tr '\n' ',')"
echo "MINIVMM-HOTPLUG-GUEST waiting slots=${slots%,} uptime=$(uptime_s)"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=1 2>/dev/null
want="$(sha256sum </tmp/pattern)"
known=" "
declare_bdf() { eval "bdf_$1=$2"; }
while :; do
    now=" "
    for sysdir in /sys/block/vd*; do
        [ -e "$sysdir" ] || continue
        now="$now${sysdir##*/} "
    done
    for dev in $now; do
        case "$known" in *" $dev "*) continue ;; esac
        dd if="/dev/$dev" of=/dev/null bs=4096 count=1 iflag=direct 2>/dev/null || continue
        echo "MINIVMM-HOTPLUG-GUEST usable dev=$dev uptime=$(uptime_s)"
        pci="$(readlink -f "/sys/block/$dev/device/.." 2>/dev/null)"
        bdf="${pci##*/}"
        declare_bdf "$dev" "$bdf"
        driver="$(readlink -f "/sys/block/$dev/device/driver" 2>/dev/null)"
        group=none
        link="$(readlink -f "$pci/iommu_group" 2>/dev/null || true)"
        [ -n "$link" ] && [ -e "$link" ] && group="${link##*/}"
        data=bad
        if dd if=/tmp/pattern of="/dev/$dev" bs=1M seek=1 oflag=direct conv=fsync 2>/dev/null &&
            [ "$(dd if="/dev/$dev" bs=1M skip=1 count=1 iflag=direct 2>/dev/null | sha256sum)" = "$want" ]; then
            data=ok
        fi
        echo "MINIVMM-HOTPLUG-GUEST checked dev=$dev bdf=$bdf driver=${driver##*/} group=$group data=$data"
        known="$known$dev "
    done
    for dev in $known; do
        case "$now" in *" $dev "*) continue ;; esac
        eval "bdf=\$bdf_$dev"
        pci=absent
        # The PCI function goes after the disk: give it a moment.
        tries=0
        while [ -e "/sys/bus/pci/devices/$bdf" ] && [ "$tries" -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        [ -e "/sys/bus/pci/devices/$bdf" ] && pci=present
        echo "MINIVMM-HOTPLUG-GUEST gone dev=$dev bdf=$bdf pci=$pci"
        known="$(echo "$known" | sed "s/ $dev / /")"
    done
    sleep 0.02
done
