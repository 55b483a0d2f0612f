# L1 scenario plan-refused: a host reserved region (from a --host-regions
# file standing for another host) that guest RAM cannot avoid: minivmm must
# refuse with one error line naming the region and what to do, exit 1,
# before touching the device. Prints MINIVMM-REFUSED rc=N lines=N msg=...
. /scenarios/vfio.inc
nic="$(vfio_bdf e1000e)" || nic="$(vfio_bdf virtio-blk)" || { echo "plan-refused: no passthrough device"; exit 1; }
# In the guest's fixed low memory: x86's [0, 64 MiB), arm64's RAM start.
case "$(uname -m)" in
    aarch64) echo "0x0000000040000000 0x0000000040ffffff reserved" >/tmp/other-host.regions ;;
    *) echo "0x0000000002000000 0x0000000002ffffff reserved" >/tmp/other-host.regions ;;
esac
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --vfio "$nic" \
    --host-regions /tmp/other-host.regions >/tmp/refused.out 2>/tmp/refused.err
rc=$?
echo "MINIVMM-REFUSED rc=$rc lines=$(wc -l </tmp/refused.err) msg=$(head -1 /tmp/refused.err)"
[ "$rc" = 1 ]
