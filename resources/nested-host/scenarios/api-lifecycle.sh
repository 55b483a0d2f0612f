# L1 scenario api-lifecycle: curl drives minivmm's API over its socket.
# minivmm starts without --kernel; vm.create (with a disk behind the
# virtio-iommu) and vm.boot bring L2 up; vm.info, vm.plan and vm.counters
# describe it; malformed requests get 4xx while the guest keeps running; a
# second minivmm on the same socket is refused; vm.reboot boots it again;
# vm.shutdown stops it; vmm.shutdown ends minivmm with 0. Every request is
# printed as a MINIVMM-API line (tests/tests/api.rs checks them).
. /scenarios/api.inc

dd if=/dev/zero of=/tmp/api-disk.img bs=1M count=16 2>/dev/null
api_start
echo "MINIVMM-API-SOCKET mode=$(stat -c %a "$API_SOCK") type=$(stat -c %F "$API_SOCK")"
api GET vmm.ping
api PUT vm.boot
api PUT vm.create '{"cpus": {"boot_vcpus": 1, "max_vcpus": 1}, "memory": {"size": 268435456},
  "payload": {"kernel": "/l2/vmlinuz", "initramfs": "/l2/initrd.img",
    "cmdline": "console=ttyS0 quiet panic=-1 minivmm.test=api-guest minivmm.disks=1"},
  "disks": [{"path": "/tmp/api-disk.img", "iommu": true, "id": "disk0", "num_queues": 1}]}'
api GET vm.info
api PUT vm.boot
api_wait_l2 "MINIVMM-API-GUEST ready" 1 120 || { api PUT vmm.shutdown; api_stop; exit 1; }
api GET vm.info
api GET vm.plan
api GET vm.counters
# Hostile requests: the VM must keep running.
api PUT vm.create '{"payload": {"kernel": "/l2/vmlinuz"'
api PUT vm.add-disk '{"path": "/tmp/x.img", "bogus": true}'
api GET vm.shutdown
api GET vm.nothing
api PUT vm.pause
head -c 100000 /dev/zero | tr '\0' 'x' >/tmp/api-big.json
api PUT vm.create "$(cat /tmp/api-big.json)"
api_status="$(curl -sS --unix-socket "$API_SOCK" -o /dev/null -w '%{http_code}' \
    -H "X-Long: $(head -c 9000 /tmp/api-big.json)" http://localhost/api/v1/vmm.ping)"
echo "MINIVMM-API GET vmm.ping-long-header status=$api_status body="
# A request line that is not HTTP (a method with spaces).
api 'G E T' vmm.ping
minivmm --api-socket "$API_SOCK" >/tmp/second.txt 2>&1
echo "MINIVMM-API-SECOND rc=$? $(cat /tmp/second.txt)"
api GET vm.info
api PUT vm.reboot
api_wait_l2 "MINIVMM-API-GUEST ready" 2 120 || { api PUT vmm.shutdown; api_stop; exit 1; }
api GET vm.counters
api PUT vm.shutdown
api GET vm.info
api PUT vmm.shutdown
api_stop
