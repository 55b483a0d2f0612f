# L2 scenario nic-tftp: a passed-through e1000e NIC (QEMU user-mode network
# of L1: the guest gets 10.0.2.15 by DHCP, 10.0.2.2 is the gateway and TFTP
# server) fetches minivmm.tftp_file=NAME over TFTP; its sha256 must be
# minivmm.tftp_sha256=HEX. Prints
#   MINIVMM-NIC ip=A iface=I sha256=H bytes=N
# Needs minivmm --vfio with the e1000e (see nested-host/scenarios/nic-tftp.sh).

file="$(cmdline_arg minivmm.tftp_file || true)"
want="$(cmdline_arg minivmm.tftp_sha256 || true)"
if [ -z "$file" ] || [ -z "$want" ]; then
    fail "no minivmm.tftp_file= or minivmm.tftp_sha256= on the command line"
fi

. /etc/minivmm/lib.sh
nic_up e1000e || fail "$NIC_ERROR"
iface="$NIC_IFACE" ip="$NIC_IP"

tftp -g -r "$file" -l "/tmp/$file" 10.0.2.2 || fail "tftp of $file from 10.0.2.2 failed"
got="$(sha256sum "/tmp/$file")"
got="${got%% *}"
bytes="$(wc -c <"/tmp/$file")"
# Interrupts: MSI-X vectors of the NIC that fired, and its IOMMU group.
msix="$(grep -E "PCI-MSIX.*$iface" /proc/interrupts | awk '{ n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; else break; total += n } END { print total + 0 }')"
group=none
link="$(readlink -f "/sys/class/net/$iface/device/iommu_group" 2>/dev/null || true)"
regions=""
if [ -n "$link" ] && [ -e "$link" ]; then
    group="${link##*/}:$(cat "$link/type" 2>/dev/null)"
    regions="$(tr ' ' '_' <"$link/reserved_regions" | tr '\n' ';')"
fi
echo "MINIVMM-NIC ip=$ip iface=$iface sha256=$got bytes=$bytes msix_irqs=$msix group=$group regions=$regions"
[ "$msix" -gt 0 ] || fail "$iface: no MSI-X interrupt was delivered"
[ "$got" = "$want" ] || fail "$file: sha256 $got, expected $want"
pass "ip=$ip bytes=$bytes"
