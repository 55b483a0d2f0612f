# L2 scenario reboot: reports PASS, then reboots the guest (the L1 side
# checks that minivmm exits 0 and says the guest rebooted).
echo "MINIVMM-L2-RESULT $SCENARIO PASS rebooting"
sync
reboot -f
sleep 30
fail "reboot -f returned"
