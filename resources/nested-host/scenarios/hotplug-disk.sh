# L1 scenario hotplug-disk: curl hot-adds and hot-removes a disk behind the
# virtio-iommu through minivmm's API. minivmm starts without --kernel;
# vm.create (no disk, "iommu": true for a virtio-iommu) and vm.boot bring
# L2 up (guest scenario hotplug-guest). Twice: vm.add-disk, the guest
# sees the disk and checks data on it, vm.remove-device, the guest ejects
# it and minivmm releases it (vm.info no longer lists it). The hot-add
# latency (the API call to the first read in L2 succeeding, seen from L1)
# is printed as MINIVMM-HOTPLUG-LATENCY round=N ms=M. Then refusals: an
# unknown id, a missing image, a boot device, every slot of the pool
# taken; then a disk outside the virtio-iommu. minivmm's open files are
# counted before the first add and after each removal
# (MINIVMM-HOTPLUG-FDS round=N before=B after=A): a removed disk leaves
# nothing open behind (image, eventfds). Every request is a MINIVMM-API line (tests/tests/hotplug.rs).
. /scenarios/api.inc
. /scenarios/hotplug.inc

for i in 0 1 2 3 4 5; do
    dd if=/dev/zero of="/tmp/hp$i.img" bs=1M count=8 2>/dev/null
done
api_start
api PUT vm.create '{"cpus": {"boot_vcpus": 1, "max_vcpus": 1}, "memory": {"size": 268435456},
  "payload": {"kernel": "/l2/vmlinuz", "initramfs": "/l2/initrd.img",
    "cmdline": "console=ttyS0 quiet panic=-1 minivmm.test=hotplug-guest"},
  "iommu": true}'
api PUT vm.boot
api_wait_l2 "MINIVMM-HOTPLUG-GUEST waiting" 1 120 || bail
api GET vm.info
fds() { ls "/proc/$api_pid/fd" | wc -l; }
fds0="$(fds)"
for round in 1 2; do
    t0="$(now_ms)"
    api PUT vm.add-disk '{"path": "/tmp/hp0.img", "iommu": true, "id": "hot0"}'
    wait_fast "MINIVMM-HOTPLUG-GUEST usable" "$round" 60 || bail
    t1="$(now_ms)"
    echo "MINIVMM-HOTPLUG-LATENCY round=$round ms=$((t1 - t0))"
    api_wait_l2 "MINIVMM-HOTPLUG-GUEST checked" "$round" 60 || bail
    api GET vm.info
    api GET vm.counters
    api PUT vm.remove-device '{"id": "hot0"}'
    api_wait_l2 "MINIVMM-HOTPLUG-GUEST gone" "$round" 60 || bail
    wait_released hot0 || bail
    echo "MINIVMM-HOTPLUG-FDS round=$round before=$fds0 after=$(fds)"
    api GET vm.info
done
# Refusals, the VM running on.
api PUT vm.remove-device '{"id": "nothere"}'
api PUT vm.remove-device '{"id": "_virtio-iommu"}'
api PUT vm.add-disk '{"path": "/tmp/missing.img", "iommu": true}'
api PUT vm.add-disk '{"path": "/tmp/hp0.img", "iommu": true, "id": "_virtio-iommu"}'
# Every slot behind the virtio-iommu taken: the next one is refused.
for i in 1 2 3 4; do
    api PUT vm.add-disk "{\"path\": \"/tmp/hp$i.img\", \"iommu\": true, \"id\": \"full$i\"}"
done
api PUT vm.add-disk '{"path": "/tmp/hp0.img", "iommu": true, "id": "full5"}'
# A disk outside the virtio-iommu goes to the other pool.
api PUT vm.add-disk '{"path": "/tmp/hp5.img", "id": "plain0"}'
api_wait_l2 "MINIVMM-HOTPLUG-GUEST checked" 7 120 || bail
api GET vm.info
api PUT vm.shutdown
api PUT vmm.shutdown
api_stop
