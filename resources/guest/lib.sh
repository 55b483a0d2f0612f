# Helpers the L2 guest's scenarios and demo share (installed as
# /etc/minivmm/lib.sh; sourced, never run).

# nic_up DRIVER: loads DRIVER (e1000e), waits for its network interface,
# brings it up with a DHCP lease (udhcpc prints `udhcpc: IFACE IP/MASK
# router=R server=S`) and sets NIC_IFACE and NIC_IP. On failure it sets
# NIC_ERROR to why and returns 1.
nic_up() {
    NIC_IFACE="" NIC_IP="" NIC_ERROR=""
    modprobe "$1" || { NIC_ERROR="could not load $1"; return 1; }
    # The netdev appears once the driver probed the device.
    tries=0
    while [ -z "$NIC_IFACE" ] && [ "$tries" -lt 100 ]; do
        for dev in /sys/class/net/*; do
            [ "$(basename "$(readlink -f "$dev/device/driver" 2>/dev/null)")" = "$1" ] && NIC_IFACE="${dev##*/}"
        done
        [ -n "$NIC_IFACE" ] || sleep 0.1
        tries=$((tries + 1))
    done
    [ -n "$NIC_IFACE" ] || { NIC_ERROR="no $1 network interface"; return 1; }
    ip link set lo up
    ip link set "$NIC_IFACE" up
    udhcpc -i "$NIC_IFACE" -n -q -t 10 -T 2 -s /etc/udhcpc/default.script ||
        { NIC_ERROR="$NIC_IFACE: no DHCP lease"; return 1; }
    NIC_IP="$(ip -4 addr show dev "$NIC_IFACE" | awk '/inet / { sub("/.*", "", $2); print $2; exit }')"
    [ -n "$NIC_IP" ] || { NIC_ERROR="$NIC_IFACE: no IPv4 address after DHCP"; return 1; }
}
