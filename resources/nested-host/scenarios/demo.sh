# L1 demo: the default L2 guest (an interactive shell) on the L1 console.
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --cpus 2 --memory 512M \
    --cmdline "console=ttyS0 quiet panic=-1"
