# L2 scenario hotplug-nic-guest: the guest of the nested-host scenario
# hotplug-nic, which adds and removes L1's e1000e through minivmm's API
# while this guest runs. It loads e1000e, prints
#   MINIVMM-HOTPLUG-GUEST waiting slots=N,... uptime=S
# then watches for an e1000e network interface; each time one arrives it
# gets a DHCP lease (lib.sh nic_up) and prints
#   MINIVMM-HOTPLUG-NIC up iface=I ip=A bdf=B group=G|none msix_irqs=N
# (or MINIVMM-HOTPLUG-NIC failed why=...), and each time it leaves
#   MINIVMM-HOTPLUG-NIC gone iface=I pci=absent|present
# It never powers off by itself: the L1 side shuts the VM down.

. /etc/minivmm/lib.sh
modprobe e1000e
slots="$(ls /sys/bus/pci/slots 2>/dev/null | sort -n | tr '\n' ',')"
echo "MINIVMM-HOTPLUG-GUEST waiting slots=${slots%,} uptime=$(uptime_s)"
iface="" bdf=""
while :; do
    found=""
    for dev in /sys/class/net/*; do
        [ "$(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)")" = e1000e ] && found="${dev##*/}"
    done
    if [ -n "$found" ] && [ -z "$iface" ]; then
        iface="$found"
        pci="$(readlink -f "/sys/class/net/$iface/device")"
        bdf="${pci##*/}"
        if nic_up e1000e; then
            ping -c 1 -W 5 10.0.2.2 >/dev/null 2>&1 && reach=yes || reach=no
            msix="$(grep -E "PCI-MSIX.*$iface" /proc/interrupts | awk '{ n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; else break; total += n } END { print total + 0 }')"
            group=none
            link="$(readlink -f "$pci/iommu_group" 2>/dev/null || true)"
            [ -n "$link" ] && [ -e "$link" ] && group="${link##*/}"
            echo "MINIVMM-HOTPLUG-NIC up iface=$iface ip=$NIC_IP bdf=$bdf group=$group msix_irqs=$msix gateway=$reach"
        else
            echo "MINIVMM-HOTPLUG-NIC failed iface=$iface why=$(echo "$NIC_ERROR" | tr ' ' '_')"
        fi
    elif [ -z "$found" ] && [ -n "$iface" ]; then
        tries=0
        while [ -e "/sys/bus/pci/devices/$bdf" ] && [ "$tries" -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        pci=absent
        [ -e "/sys/bus/pci/devices/$bdf" ] && pci=present
        echo "MINIVMM-HOTPLUG-NIC gone iface=$iface bdf=$bdf pci=$pci"
        iface=""
    fi
    sleep 0.05
done
