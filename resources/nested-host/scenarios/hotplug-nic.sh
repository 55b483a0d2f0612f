# L1 scenario hotplug-nic: curl hot-adds L1's e1000e (run.sh --passthrough
# e1000e, bound to vfio-pci) behind the virtio-iommu through minivmm's API,
# twice: vm.add-device, the guest (hotplug-nic-guest) gets a DHCP lease
# through it, vm.remove-device, the guest ejects it and minivmm releases
# it (vm.info no longer lists it), so that the same host device can be
# added again (minivmm's open files are counted before the first add and
# after each removal: MINIVMM-HOTPLUG-FDS round=N before=B after=A); then once outside the virtio-iommu. The hot-add latency (the API call to the lease in L2, seen
# from L1) is printed as MINIVMM-HOTPLUG-LATENCY round=N ms=M. Before
# that, vm.plan shows what the boot plan reserved for hot-adds (L1's IOMMU
# groups, its VT-d width), and L1's ISA bridge (q35's LPC at 00:1f.0,
# whose group Linux gives 0-16 MiB direct-relaxable for the floppy DMA
# workaround) is refused in both pools: the guest's RAM is there. Every
# request is a MINIVMM-API line (tests/tests/hotplug.rs).
. /scenarios/api.inc
. /scenarios/vfio.inc
. /scenarios/hotplug.inc

nic="$(vfio_bdf e1000e)" || { echo "hotplug-nic: no e1000e passthrough device"; exit 1; }
api_start
api PUT vm.create '{"cpus": {"boot_vcpus": 1, "max_vcpus": 1}, "memory": {"size": 268435456},
  "payload": {"kernel": "/l2/vmlinuz", "initramfs": "/l2/initrd.img",
    "cmdline": "console=ttyS0 quiet panic=-1 minivmm.test=hotplug-nic-guest"},
  "iommu": true}'
api PUT vm.boot
api_wait_l2 "MINIVMM-HOTPLUG-GUEST waiting" 1 120 || bail
api GET vm.plan
lpc=0000:00:1f.0
echo "MINIVMM-HOTPLUG-LPC-REGIONS $(tr '\n' ';' < /sys/bus/pci/devices/$lpc/iommu_group/reserved_regions)"
api PUT vm.add-device "{\"path\": \"/sys/bus/pci/devices/$lpc\", \"id\": \"lpc\"}"
api PUT vm.add-device "{\"path\": \"/sys/bus/pci/devices/$lpc\", \"iommu\": true, \"id\": \"lpc\"}"
fds() { ls "/proc/$api_pid/fd" | wc -l; }
fds0="$(fds)"
for round in 1 2; do
    t0="$(now_ms)"
    api PUT vm.add-device "{\"path\": \"/sys/bus/pci/devices/$nic\", \"iommu\": true, \"id\": \"nic0\"}"
    wait_fast "MINIVMM-HOTPLUG-NIC [uf]" "$round" 90 || bail
    t1="$(now_ms)"
    echo "MINIVMM-HOTPLUG-LATENCY round=$round ms=$((t1 - t0))"
    api GET vm.info
    api PUT vm.add-device "{\"path\": \"/sys/bus/pci/devices/$nic\", \"iommu\": true, \"id\": \"nic1\"}"
    api PUT vm.remove-device '{"id": "nic0"}'
    api_wait_l2 "MINIVMM-HOTPLUG-NIC gone" "$round" 60 || bail
    wait_released nic0 || bail
    echo "MINIVMM-HOTPLUG-FDS round=$round before=$fds0 after=$(fds)"
    api GET vm.info
done
# Outside the virtio-iommu: the other pool, all guest RAM mapped.
api PUT vm.add-device "{\"path\": \"/sys/bus/pci/devices/$nic\", \"id\": \"nic2\"}"
wait_fast "MINIVMM-HOTPLUG-NIC [uf]" 3 90 || bail
api PUT vm.remove-device '{"id": "nic2"}'
api_wait_l2 "MINIVMM-HOTPLUG-NIC gone" 3 60 || bail
wait_released nic2 || bail
echo "MINIVMM-HOTPLUG-FDS round=3 before=$fds0 after=$(fds)"
api PUT vm.shutdown
api PUT vmm.shutdown
api_stop
