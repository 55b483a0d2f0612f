# L2 scenario panic: checks the pvpanic driver is bound to the ACPI device,
# reports PASS, then crashes the kernel (the L1 side checks minivmm exits 3).
bound=""
for dev in /sys/bus/platform/drivers/pvpanic-mmio/*; do
    [ -e "$dev/driver" ] && bound="$bound ${dev##*/}"
done
[ -n "$bound" ] || fail "pvpanic-mmio is not bound to a device"
echo "MINIVMM-L2-RESULT $SCENARIO PASS panicking (pvpanic on$bound)"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
sleep 30
fail "sysrq-trigger c returned"
