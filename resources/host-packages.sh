#!/usr/bin/env bash
# Installs the host packages the nested test hosts, the demo and the arm64
# cross build need (QEMU, a static busybox, cpio, kmod for depmod, xz;
# Debian's Rust toolchain for aarch64 through cargo-aarch64.sh). Idempotent.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_packages qemu-system-x86 busybox-static cpio kmod xz-utils curl
bash "$(dirname "$0")/cargo-aarch64.sh" --install-only
