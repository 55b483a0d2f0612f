# L1 scenario reboot: the L2 guest reboots; minivmm exits on reboot with rc 0.
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=reboot"
