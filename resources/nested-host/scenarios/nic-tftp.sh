# L1 scenario nic-tftp: passes L1's e1000e (run.sh --passthrough
# e1000e:DIR) through to L2 with minivmm --vfio; the L2 guest brings the NIC
# up with DHCP and fetches a file from QEMU's TFTP server (the nic-tftp guest
# scenario). The file and its hash come from L1's command line
# (minivmm.tftp_file=NAME minivmm.tftp_sha256=HEX; the test fixture sets
# them); minivmm.vfio_iommu=on|off (default off) picks --vfio's iommu=.
# Expected rc: 0.
. /scenarios/vfio.inc
nic="$(vfio_bdf e1000e)" || { echo "nic-tftp: no e1000e passthrough device"; exit 1; }
file="$(l1_cmdline_arg minivmm.tftp_file)" || { echo "nic-tftp: no minivmm.tftp_file="; exit 1; }
sha="$(l1_cmdline_arg minivmm.tftp_sha256)" || { echo "nic-tftp: no minivmm.tftp_sha256="; exit 1; }
iommu="$(l1_cmdline_arg minivmm.vfio_iommu || echo off)"
# minivmm.l2_forcedac=1 boots L2 with iommu.forcedac=1 (IOVAs above 4 GiB).
extra=""
[ "$(l1_cmdline_arg minivmm.l2_forcedac || echo 0)" = 1 ] && extra="iommu.forcedac=1"
exec minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --vfio "$nic,iommu=$iommu" \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=nic-tftp minivmm.tftp_file=$file minivmm.tftp_sha256=$sha $extra"
