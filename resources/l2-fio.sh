#!/usr/bin/env bash
# Fetches Debian bookworm's fio (pinned: MINIVMM_FIO_VERSION) and the
# library packages of its dependency closure, for MINIVMM_ARCH, into the
# cache, extracted (never installed), and prints the directory:
# DIR/usr/bin/fio with its libraries under DIR/lib and DIR/usr/lib.
# guest-initramfs.sh --with-fio copies fio and the libraries it needs
# (walked with readelf, see copy_foreign_binary in lib.sh) into the L2
# image of the nested benchmark suite (benches/nested/). The packages are
# fio and the library packages (lib*, zlib1g) of its dependency closure as
# apt resolves it. A second run reuses the cache.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

version="${MINIVMM_FIO_VERSION:-3.33-3}"
dir="$(cache_dir)/fio-$version-$MINIVMM_DEB_ARCH"
# The native architecture's packages are named without a qualifier.
qualifier=""
[ "$MINIVMM_DEB_ARCH" = "$(dpkg --print-architecture)" ] || qualifier=":$MINIVMM_DEB_ARCH"
if [ ! -f "$dir/.done" ]; then
    [ -z "$qualifier" ] || ensure_foreign_arch "$MINIVMM_DEB_ARCH"
    mapfile -t packages < <(library_closure "fio$qualifier")
    [ "${#packages[@]}" -gt 0 ] || die "apt knows no dependencies of fio$qualifier (run apt-get update)"
    log "fetching fio $version and ${#packages[@]} library packages"
    fetch_extracted "$dir" -- "fio$qualifier=$version" "${packages[@]}"
fi
[ -x "$dir/usr/bin/fio" ] || die "no fio in $dir"
printf '%s\n' "$dir"
