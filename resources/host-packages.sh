#!/usr/bin/env bash
# Installs the host packages the nested test host and the demo need
# (QEMU, a static busybox, cpio, kmod for depmod, xz, dmsetup for the
# fault-injection scenarios' device-mapper targets). Idempotent.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_packages qemu-system-x86 busybox-static cpio kmod xz-utils dmsetup
