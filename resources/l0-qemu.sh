#!/usr/bin/env bash
# Fetches the pinned QEMU from Debian's bookworm-backports into the cache,
# extracted next to the pinned kernel (never installed over the system's
# QEMU 7.2), and prints the directory that holds it:
#   DIR/usr/bin/qemu-system-x86_64, DIR/usr/bin/qemu-system-aarch64,
#   DIR/usr/share/qemu (firmware), DIR/usr/lib/x86_64-linux-gnu/qemu (modules)
# Run QEMU from DIR through `l0_qemu_cmd` in lib.sh, which adds the firmware
# path, its own module directory and `-audio none` (without the last two it
# finds 7.2's modules and aborts while probing audio).
# apt runs with a private source list and list directory under the cache, so
# the system's apt configuration is not changed. A second run reuses the
# cache.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ver="$MINIVMM_L0_QEMU_VERSION"
dir="$(cache_dir)/qemu-${ver//[:~+]/_}"
packages=(qemu-system-x86 qemu-system-arm qemu-system-data qemu-system-common)

if [ ! -f "$dir/.done" ]; then
    ensure_packages ca-certificates debian-archive-keyring
    apt_dir="$dir.apt"
    rm -rf "$apt_dir"
    mkdir -p "$apt_dir/lists/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" \
        >"$apt_dir/sources.list"
    apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists")
    log "fetching QEMU $ver from bookworm-backports"
    apt-get "${apt_opts[@]}" update >&2
    fetch_extracted "$dir" "${apt_opts[@]}" -- "${packages[@]/%/=$ver}"
    rm -rf "$apt_dir"
fi
[ -x "$dir/usr/bin/qemu-system-x86_64" ] || die "no qemu-system-x86_64 in $dir"
printf '%s\n' "$dir"
