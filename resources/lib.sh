# shellcheck shell=bash
# Shared helpers for the minivmm resource scripts. Source it; it is safe under
# `set -euo pipefail`. Provides progress logging, the download cache, package
# installation, and the copying of kernel modules and binaries into images.

# The pinned kernel release used for both the nested host (L1) and the
# guest (L2); the package's flavour is the architecture's.
MINIVMM_KERNEL_RELEASE="${MINIVMM_KERNEL_RELEASE:-6.12.107+deb12}"
MINIVMM_CACHE="${MINIVMM_CACHE:-$HOME/.cache/minivmm}"
# The QEMU that l0-qemu.sh fetches from bookworm-backports.
MINIVMM_L0_QEMU_VERSION="${MINIVMM_L0_QEMU_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}"
# The L0 (the QEMU that runs the nested host) the scripts use by default; see
# l0_qemu and docs/testing.md for the measurements behind the choice. For
# arm64 nested hosts QEMU 10 too (its `-cpu max` spares L1's KVM a trap on
# every CTR_EL0 read: half the L2 boot time; see TESTBED).
MINIVMM_L0_DEFAULT=qemu10
MINIVMM_L0_DEFAULT_AARCH64=qemu10
# Nested hosts with an emulated IOMMU stay on QEMU 7.2 (docs/testing.md):
# QEMU 10.0.2's amd-iommu with intremap=on loses the IO-APIC's interrupts
# under TCG, and L1 panics on every boot ("timer doesn't work through
# Interrupt-remapped IO-APIC"); with intel-iommu and a device assigned to
# L2, an idle L1 vCPU stops taking timer interrupts in some runs (RCU
# stalls, then a hang). QEMU 7.2's int3 flake there is retried by the test
# fixture.
MINIVMM_L0_DEFAULT_IOMMU=qemu7.2

# use_arch ARCH: the architecture of the guests and nested host the scripts
# build (x86_64, the default, or aarch64). Exports MINIVMM_ARCH (so the
# scripts they run build for it too) and sets MINIVMM_DEB_ARCH (amd64,
# arm64), MINIVMM_KERNEL_VERSION (e.g. 6.12.107+deb12-arm64) and
# MINIVMM_CC (the C compiler for static guest tools).
use_arch() {
    case "$1" in
        x86_64) MINIVMM_DEB_ARCH=amd64 MINIVMM_CC="${CC:-cc}" ;;
        aarch64) MINIVMM_DEB_ARCH=arm64 MINIVMM_CC=aarch64-linux-gnu-gcc ;;
        *) die "unknown architecture $1 (x86_64 or aarch64)" ;;
    esac
    export MINIVMM_ARCH="$1"
    MINIVMM_KERNEL_VERSION="$MINIVMM_KERNEL_RELEASE-$MINIVMM_DEB_ARCH"
}

# Prints a progress line on stderr (stdout is kept for results).
log() {
    printf '==> %s\n' "$*" >&2
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Creates (if needed) and prints the cache directory.
# ensure_pinned_rust ROOT: rust-toolchain.toml in ROOT pins a Rust version.
# Machines that cannot reach the Rust dist server cannot download it, so when
# the installed stable toolchain is that version, register it under the
# pinned name instead.
ensure_pinned_rust() {
    local pinned
    pinned="$(sed -n 's/^channel = "\(.*\)"/\1/p' "$1/rust-toolchain.toml")"
    command -v rustup >/dev/null || return 0
    rustup toolchain list | grep -q "^$pinned" && return 0
    if rustc +stable --version 2>/dev/null | grep -q "^rustc $pinned "; then
        # rustup will not `link` a custom toolchain under an official name,
        # so point the name at the installed toolchain directly.
        local toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
        local host
        host="$(rustc +stable -vV | sed -n 's/^host: //p')"
        log "registering the installed stable Rust as $pinned"
        ln -sfn "$(rustc +stable --print sysroot)" "$toolchains/$pinned-$host"
    fi
}

use_arch "${MINIVMM_ARCH:-x86_64}"

cache_dir() {
    mkdir -p "$MINIVMM_CACHE"
    printf '%s\n' "$MINIVMM_CACHE"
}

# ensure_packages PKG...: installs the Debian packages that are missing.
# Runs `apt-get update` and `apt-get install` only when something is missing.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    log "installing packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# ensure_foreign_arch ARCH: lets dpkg install packages of ARCH (e.g. arm64,
# for libstd-rust-web-dev:arm64); the next ensure_packages updates the lists.
ensure_foreign_arch() {
    if [ "$(dpkg --print-architecture)" = "$1" ] || dpkg --print-foreign-architectures | grep -qx "$1"; then
        return 0
    fi
    log "adding the dpkg architecture $1"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" dpkg --add-architecture "$1"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
}

# library_closure PKG: the library packages (lib*, zlib1g) of PKG's
# dependency closure as apt resolves it, one per line, with PKG's
# architecture qualifier (PKG may be name:ARCH) and none for native ones.
library_closure() {
    local qualifier=""
    case "$1" in *:*) qualifier=":${1##*:}" ;; esac
    apt-cache depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances --no-pre-depends \
        "$1" | grep -v '^ ' | grep -E "^(lib|zlib1g)[^:]*$qualifier\$" | sort -u
}

# fetch_extracted DIR [APT_OPTION...] -- PKG...: downloads the Debian
# packages PKG... (apt-get download, with APT_OPTIONs) and extracts them all
# into DIR (never installed), through DIR.tmp so an interrupted run leaves
# nothing that looks complete; DIR/.done marks it complete.
fetch_extracted() {
    local dir="$1" opts=() deb
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    [ "${1:-}" = -- ] || die "fetch_extracted: no -- before the packages"
    shift
    rm -rf "$dir" "$dir.tmp.debs" "$dir.tmp.root"
    mkdir -p "$dir.tmp.debs"
    # apt downloads as the _apt user: give it a directory it may write.
    chmod 0777 "$dir.tmp.debs"
    (cd "$dir.tmp.debs" && apt-get "${opts[@]}" download -q "$@" >&2)
    for deb in "$dir.tmp.debs"/*.deb; do
        dpkg-deb -x "$deb" "$dir.tmp.root"
    done
    mv "$dir.tmp.root" "$dir"
    rm -rf "$dir.tmp.debs"
    touch "$dir/.done"
}

# copy_modules KROOT VERSION DEST MODULE...: copies the named modules and every
# module they depend on (per KROOT/lib/modules/VERSION/modules.dep) into
# DEST/lib/modules/VERSION, decompressing .ko.xz to .ko, then runs depmod on
# DEST. Modules that are built in (listed in modules.builtin) are skipped.
copy_modules() {
    local kroot="$1" ver="$2" dest="$3"
    shift 3
    local src="$kroot/lib/modules/$ver"
    local dst="$dest/lib/modules/$ver"
    [ -f "$src/modules.dep" ] || die "no modules.dep in $src (run depmod)"
    mkdir -p "$dst"
    local -A seen=()
    local queue=("$@") name path deps dep
    while [ "${#queue[@]}" -gt 0 ]; do
        name="${queue[0]}"
        queue=("${queue[@]:1}")
        # modules.dep uses file names; the names given may use - or _.
        name="${name//_/[-_]}"
        path=""
        deps=""
        local line
        line="$(grep -E "(^|/)${name}\.ko(\.xz|\.zst|\.gz)?:" "$src/modules.dep" | head -n1 || true)"
        if [ -z "$line" ]; then
            if grep -qE "(^|/)${name}\.ko" "$src/modules.builtin" 2>/dev/null; then
                continue
            fi
            die "module ${name} not found in $src/modules.dep"
        fi
        path="${line%%:*}"
        deps="${line#*:}"
        [ -n "${seen[$path]:-}" ] && continue
        seen[$path]=1
        mkdir -p "$dst/$(dirname "$path")"
        case "$path" in
            *.ko.xz) xz -dc "$src/$path" >"$dst/${path%.xz}" ;;
            *) cp "$src/$path" "$dst/$path" ;;
        esac
        for dep in $deps; do
            dep="$(basename "$dep")"
            queue+=("${dep%%.ko*}")
        done
    done
    cp "$src/modules.order" "$src/modules.builtin" "$dst/" 2>/dev/null || true
    [ -f "$src/modules.builtin.modinfo" ] && cp "$src/modules.builtin.modinfo" "$dst/"
    depmod -b "$dest" "$ver"
}

# copy_binary BIN DEST: copies BIN and the shared libraries `ldd` lists (plus the
# dynamic loader) into DEST at the same absolute paths. BIN itself goes to
# DEST/<its absolute path> unless a third argument names the target path.
copy_binary() {
    local bin="$1" dest="$2" target="${3:-}"
    [ -x "$bin" ] || die "not an executable: $bin"
    [ -n "$target" ] || target="$(readlink -f "$bin")"
    mkdir -p "$dest/$(dirname "$target")"
    cp -L "$bin" "$dest/$target"
    local lib
    # ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
    while read -r lib; do
        [ -n "$lib" ] || continue
        mkdir -p "$dest/$(dirname "$lib")"
        cp -L "$lib" "$dest/$lib"
    done < <(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true)
}

# pack_cpio DIR OUT: packs DIR as a gzip'ed newc cpio archive (initramfs).
pack_cpio() {
    local dir="$1" out="$2"
    mkdir -p "$(dirname "$out")"
    (cd "$dir" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
}

# busybox_binary: prints the path of a static busybox for MINIVMM_ARCH:
# the host's for x86_64; for aarch64 busybox-static:arm64, downloaded and
# extracted into the cache.
busybox_binary() {
    if [ "$MINIVMM_DEB_ARCH" = amd64 ]; then
        ensure_packages busybox-static
        echo /bin/busybox
        return
    fi
    local dir
    dir="$(cache_dir)/busybox-$MINIVMM_DEB_ARCH"
    if [ ! -f "$dir/.done" ]; then
        ensure_foreign_arch "$MINIVMM_DEB_ARCH"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        chmod 0777 "$dir.tmp"
        log "downloading busybox-static:$MINIVMM_DEB_ARCH"
        (cd "$dir.tmp" && apt-get download -q "busybox-static:$MINIVMM_DEB_ARCH" >&2)
        dpkg-deb -x "$dir.tmp"/busybox-static_*.deb "$dir.tmp/root"
        mv "$dir.tmp/root" "$dir"
        rm -rf "$dir.tmp"
        touch "$dir/.done"
    fi
    echo "$dir/bin/busybox"
}

# install_busybox DIR: puts a static busybox for MINIVMM_ARCH and its applet
# links into DIR. The applet list is the host busybox's (the same Debian
# version and configuration; a foreign binary cannot run here).
install_busybox() {
    local dir="$1" applet
    mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin"
    cp "$(busybox_binary)" "$dir/bin/busybox"
    ensure_packages busybox-static
    for applet in $(/bin/busybox --list); do
        [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
    done
}

# l0_qemu NAME ARCH [IOMMU]: sets the array L0_QEMU to the command line start of the
# L0 called NAME for guests of ARCH (x86_64 or aarch64), and L0_NAME to the
# name resolved:
#   qemu7.2          the system's QEMU (Debian bookworm's 7.2), TCG with one
#                    host thread per vCPU
#   qemu7.2-single   the same, all vCPUs on one host thread
#   qemu10           QEMU from l0-qemu.sh (bookworm-backports), one thread per vCPU
#   qemu10-single    the same, all vCPUs on one host thread
# NAME "default" means $MINIVMM_L0 if set, else $MINIVMM_L0_DEFAULT (for
# aarch64 $MINIVMM_L0_DEFAULT_AARCH64, for an x86 nested host with an
# emulated IOMMU, IOMMU intel, intel-nointremap or amd,
# $MINIVMM_L0_DEFAULT_IOMMU).
l0_qemu() {
    local name="$1" arch="$2" iommu="${3:-none}" threads=multi dir bin default="$MINIVMM_L0_DEFAULT"
    [ "$arch" != aarch64 ] || default="$MINIVMM_L0_DEFAULT_AARCH64"
    case "$arch:$iommu" in
        x86_64:intel | x86_64:intel-nointremap | x86_64:amd) default="$MINIVMM_L0_DEFAULT_IOMMU" ;;
    esac
    [ "$name" != default ] || name="${MINIVMM_L0:-$default}"
    L0_NAME="$name"
    case "$name" in
        *-single) threads=single; name="${name%-single}" ;;
    esac
    case "$name" in
        qemu7.2)
            ensure_packages qemu-system-x86
            [ "$arch" != aarch64 ] || ensure_packages qemu-system-arm
            L0_QEMU=("qemu-system-$arch")
            ;;
        qemu10)
            ensure_packages seabios
            dir="$(bash "$(dirname "${BASH_SOURCE[0]}")/l0-qemu.sh")"
            bin="$dir/usr/bin/qemu-system-$arch"
            [ -x "$bin" ] || die "no $bin"
            # Its own modules and firmware; -audio none keeps it from probing
            # the system QEMU's audio modules.
            L0_QEMU=(env "QEMU_MODULE_DIR=$dir/usr/lib/x86_64-linux-gnu/qemu" "$bin"
                -L "$dir/usr/share/qemu" -L /usr/share/seabios -audio none)
            ;;
        *) die "unknown L0 $1 (qemu7.2, qemu7.2-single, qemu10 or qemu10-single)" ;;
    esac
    L0_QEMU+=(-accel "tcg,thread=$threads")
}

# copy_foreign_binary BIN SYSROOT DEST TARGET: copies BIN (a dynamically
# linked binary of MINIVMM_ARCH whose libraries are in SYSROOT, not on this
# host: another architecture's, which ldd cannot read, or extracted
# packages such as l2-fio.sh's) to
# DEST/TARGET, and every shared library it needs, found by walking the
# NEEDED entries (readelf -d) through the RUNPATH and SYSROOT's library
# directories, to
# DEST at the same paths, plus its dynamic loader (PT_INTERP).
copy_foreign_binary() {
    local bin="$1" sysroot="$2" dest="$3" target="$4"
    ensure_packages binutils
    mkdir -p "$dest/$(dirname "$target")"
    cp -L "$bin" "$dest/$target"
    local interp
    interp="$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')"
    if [ -n "$interp" ]; then
        mkdir -p "$dest/$(dirname "$interp")"
        cp -L "$sysroot$interp" "$dest$interp" 2>/dev/null ||
            cp -L "$sysroot/usr$interp" "$dest$interp" || die "no $interp in $sysroot"
    fi
    local -A seen=()
    local queue=("$bin") file lib dir found runpath
    while [ "${#queue[@]}" -gt 0 ]; do
        file="${queue[0]}"
        queue=("${queue[@]:1}")
        # A library's RUNPATH/RPATH (absolute directories, e.g. ceph's
        # private libraries) is searched first.
        runpath="$(readelf -d "$file" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p' | tr ':' ' ')"
        for lib in $(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            [ -z "${seen[$lib]:-}" ] || continue
            seen[$lib]=1
            found=""
            # shellcheck disable=SC2086
            for dir in $runpath "/lib/$MINIVMM_ARCH-linux-gnu" "/usr/lib/$MINIVMM_ARCH-linux-gnu" /lib /usr/lib; do
                if [ -e "$sysroot$dir/$lib" ]; then
                    found="$dir/$lib"
                    break
                fi
            done
            [ -n "$found" ] || die "$bin needs $lib, which is not in $sysroot"
            mkdir -p "$dest/$(dirname "$found")"
            cp -L "$sysroot$found" "$dest$found"
            queue+=("$sysroot$found")
        done
    done
}
