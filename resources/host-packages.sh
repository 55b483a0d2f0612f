#!/usr/bin/env bash
# Installs the host packages the nested test hosts, the demo and the arm64
# cross build need (QEMU 7.2 and the pinned QEMU 10 from bookworm-backports,
# a static busybox, cpio, kmod for depmod, xz, curl for the API tests,
# dmsetup for the fault-injection scenarios' device-mapper targets;
# Debian's Rust toolchain for aarch64 through cargo-aarch64.sh). Idempotent.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_packages qemu-system-x86 busybox-static cpio kmod xz-utils curl dmsetup
# The default L0 QEMU (see l0_qemu in lib.sh), fetched into the cache now
# rather than during the first nested boot.
bash "$(dirname "$0")/l0-qemu.sh" >/dev/null
bash "$(dirname "$0")/cargo-aarch64.sh" --install-only
