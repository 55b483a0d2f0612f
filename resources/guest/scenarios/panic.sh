# L2 scenario panic: checks the guest can tell minivmm it panics, reports
# PASS, then crashes the kernel (the L1 side checks minivmm exits 3). On x86
# that is the pvpanic driver bound to the ACPI device; arm64's Debian kernel
# has no pvpanic driver, and minivmm's reboot=panic_warm makes the panic
# reboot through PSCI SYSTEM_RESET2 instead.
bound=""
for dev in /sys/bus/platform/drivers/pvpanic-mmio/*; do
    [ -e "$dev/driver" ] && bound="$bound ${dev##*/}"
done
if [ -n "$bound" ]; then
    how="pvpanic on$bound"
elif [ "$(uname -m)" = aarch64 ] && grep -qw reboot=panic_warm /proc/cmdline; then
    how="no pvpanic driver; reboot=panic_warm"
else
    fail "pvpanic-mmio is not bound to a device"
fi
echo "MINIVMM-L2-RESULT $SCENARIO PASS panicking ($how)"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
sleep 30
fail "sysrq-trigger c returned"
