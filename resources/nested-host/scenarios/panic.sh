# L1 scenario panic: the L2 kernel panics; pvpanic tells minivmm, which
# exits with rc 3 (guest crashed).
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=panic"
