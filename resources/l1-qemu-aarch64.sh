#!/usr/bin/env bash
# Fetches Debian bookworm's qemu-system-arm for arm64 and the arm64
# libraries it links against into the cache, extracted (never installed),
# and prints the directory: DIR/usr/bin/qemu-system-aarch64 with its
# libraries under DIR/lib and DIR/usr/lib (aarch64-linux-gnu). build.sh
# --with-qemu --arch aarch64 copies the binary and the libraries it needs
# into the arm64 L1 image, so an L1 scenario can run the same L2 under
# QEMU/KVM for comparison (scenarios/maplat.sh). The packages are
# qemu-system-arm:arm64 and the library packages (lib*, zlib1g) of its
# dependency closure as apt resolves it. A second run reuses the cache.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

dir="$(cache_dir)/qemu-arm64-sysroot"
if [ ! -f "$dir/.done" ]; then
    ensure_foreign_arch arm64
    mapfile -t packages < <(library_closure qemu-system-arm:arm64)
    [ "${#packages[@]}" -gt 0 ] || die "apt knows no dependencies of qemu-system-arm:arm64 (run apt-get update)"
    log "fetching qemu-system-arm:arm64 and ${#packages[@]} library packages"
    fetch_extracted "$dir" -- qemu-system-arm:arm64 "${packages[@]}"
fi
[ -x "$dir/usr/bin/qemu-system-aarch64" ] || die "no qemu-system-aarch64 in $dir"
printf '%s\n' "$dir"
