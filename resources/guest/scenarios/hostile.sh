# L2 scenario hostile: /usr/bin/hostile drives minivmm's virtio-iommu from
# userspace (the guest's virtio-iommu driver is kept out with
# modprobe.blacklist=virtio_iommu) with well-formed checks, the malformed
# cases of issue 8, and minivmm.hostile_secs= seconds (default 20) of
# random requests and configuration writes; the passed-through edu device
# is its endpoint. minivmm.hostile_skip=CASE,CASE leaves cases out. The
# guest must have memmap=160M$0x8000000 on its command line (the range the
# tool may let the device write to). Run by the L1 scenarios hostile and
# hostile-nopoll.
secs="$(cmdline_arg minivmm.hostile_secs || echo 20)"
skip="$(cmdline_arg minivmm.hostile_skip || echo none)"
grep -q '^virtio_iommu ' /proc/modules && fail "the virtio_iommu driver is loaded"
hostile "$secs" "$skip" || fail "a check or a case failed (MINIVMM-HOSTILE lines)"
pass "secs=$secs"
