# L1 scenario boot-smp: boots the L2 guest with 2 vCPUs; the guest checks
# its CPUs and ACPI tables and prints MINIVMM-L2-RESULT. Expected rc: 0.
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --cpus 2 --memory 512M \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=boot-smp minivmm.expect_cpus=2"
