#!/usr/bin/env bash
# Fetches the pinned Debian kernel package for MINIVMM_ARCH (x86_64 by
# default, or aarch64) into the cache, extracts it and generates
# modules.dep. Prints the directory that holds boot/vmlinuz-<ver>,
# boot/config-<ver> and lib/modules/<ver>. A second run reuses the cache.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ver="$MINIVMM_KERNEL_VERSION"
pkg="linux-image-${ver}-unsigned"
# A foreign architecture's package is named with its architecture.
qualified="$pkg"
[ "$MINIVMM_DEB_ARCH" = "$(dpkg --print-architecture)" ] || qualified="$pkg:$MINIVMM_DEB_ARCH"
dir="$(cache_dir)/kernel-$ver"

if [ ! -f "$dir/.done" ]; then
    ensure_packages kmod
    [ "$qualified" = "$pkg" ] || ensure_foreign_arch "$MINIVMM_DEB_ARCH"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$dir.tmp"
    log "downloading kernel $ver"
    # apt downloads as the _apt user: give it a directory it may write.
    dl="$(mktemp -d)"
    chmod 0777 "$dl"
    (cd "$dl" && apt-get download -q "$qualified" >&2) || {
        log "apt-get download failed; refreshing the package lists"
        apt-get update -q >&2
        (cd "$dl" && apt-get download -q "$qualified" >&2)
    }
    mv "$dl"/"${pkg}"_*.deb "$dir.tmp/"
    rmdir "$dl"
    log "extracting kernel $ver"
    dpkg-deb -x "$dir.tmp"/"${pkg}"_*.deb "$dir.tmp/root"
    depmod -b "$dir.tmp/root" "$ver"
    mv "$dir.tmp/root" "$dir"
    rm -rf "$dir.tmp"
    touch "$dir/.done"
fi
[ -f "$dir/boot/vmlinuz-$ver" ] || die "no kernel image in $dir"
printf '%s\n' "$dir"
