# L1 scenario faults-ioerr: L2's disk is a device-mapper device whose
# sectors 8192-10239 (4 MiB to 5 MiB) are an `error` target. The guest
# (scenario faults, mode ioerr) must get IOERR there and nowhere else, and
# minivmm must stay up (exit 0 when the guest powers off). Prints
#   MINIVMM-FAULTS-HOST run=ioerr rc=N log_lines=N
. /scenarios/faults.inc
dev="$(dm_disk faulty "0 8192 linear LOOP 0
8192 2048 error
10240 $((FAULTS_SECTORS - 10240)) linear LOOP 10240")" || { echo "faults: no dm device"; exit 1; }
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --disk "path=$dev" \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=faults minivmm.faults=ioerr" 2>/tmp/faults/err
rc=$?
echo "MINIVMM-FAULTS-HOST run=ioerr rc=$rc log_lines=$(wc -l </tmp/faults/err)"
sed 's/^/minivmm-stderr: /' /tmp/faults/err | head -n 20
dm_remove faulty
exit "$rc"
