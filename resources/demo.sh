#!/usr/bin/env bash
# The demo: builds minivmm (release) and the nested host images, then boots
# the nested host (L1, QEMU TCG) in demo mode with its console on this
# terminal. L1 has an emulated Intel IOMMU and an e1000e NIC on QEMU's user
# network, bound to vfio-pci; minivmm prints its plan for the guest, then
# boots L2 with the NIC assigned and a disk, both behind its virtio-iommu.
# L2 shows its IOMMU groups, their reserved regions, the VIOT table and the
# NIC's DHCP lease, and you land in its busybox shell. `exit` (or
# poweroff -f) ends the guest, minivmm and L1; Ctrl-a x quits QEMU at any
# time. MINIVMM_BIN=PATH uses another binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# shellcheck source=resources/lib.sh
. "$here/lib.sh"

bash "$here/host-packages.sh"
if [ -z "${MINIVMM_BIN:-}" ]; then
    ensure_pinned_rust "$root"
    log "building minivmm (release)"
    (cd "$root" && cargo build --release -p vmm)
fi
bin="${MINIVMM_BIN:-$root/target/release/minivmm}"
images="$root/target/nested/demo-images"
bash "$here/nested-host/build.sh" --minivmm "$bin" --out "$images"
[ -t 0 ] || log "warning: stdin is not a terminal; the guest shell will not be interactive"
# QEMU 10 even with the emulated IOMMU (docs/testing.md): the demo's steps
# never hit its timer defect (demo.rs passed in every suite run under it),
# and QEMU 7.2's int3 oops would not be retried in front of a person.
exec bash "$here/nested-host/run.sh" --images "$images" --mode demo --iommu intel --passthrough e1000e \
    --l0 "${MINIVMM_L0:-qemu10}"
