# L1 scenario boot-smp8: the boot-smp checks with 8 vCPUs (L1 needs at least
# 10 vCPUs for this; see TESTBED). Expected rc: 0.
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --cpus 8 --memory 1G \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=boot-smp minivmm.expect_cpus=8"
