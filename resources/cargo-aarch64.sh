#!/usr/bin/env bash
# Cargo for the aarch64 target, with Debian's Rust toolchain: rustup's pinned
# toolchain has no aarch64 standard library and this project's machines
# cannot download one, so the cross build uses Debian bookworm's rustc-web /
# cargo-web (1.96, /usr/bin) with libstd-rust-web-dev:arm64, its clippy
# (rust-web-clippy) and gcc-aarch64-linux-gnu as the linker (.cargo/config.toml
# links statically). Installs what is missing, then runs
#   cargo ARGS... --target aarch64-unknown-linux-gnu
# e.g.  resources/cargo-aarch64.sh build --release -p vmm
#       resources/cargo-aarch64.sh clippy --workspace --all-targets -- -D warnings
# (the binary: target/aarch64-unknown-linux-gnu/release/minivmm).
# With --install-only it only installs the packages (host-packages.sh).
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/lib.sh"

ensure_foreign_arch arm64
ensure_packages rustc-web cargo-web rust-web-clippy libstd-rust-web-dev:arm64 \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross
[ "${1:-}" != --install-only ] || exit 0
[ $# -gt 0 ] || die "usage: $0 CARGO-COMMAND [ARGS...] (or --install-only)"

# /usr/bin first, so cargo finds Debian's rustc, cargo-clippy and
# clippy-driver rather than rustup's proxies (which follow
# rust-toolchain.toml to a toolchain without the aarch64 std).
export PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc
unset RUSTC_WRAPPER RUSTUP_TOOLCHAIN
cmd="$1"
shift
# Arguments after `--` go to the tool (clippy's -D warnings): keep the
# target before them.
args=() tool=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
        tool=("$@")
        break
    fi
    args+=("$1")
    shift
done
exec /usr/bin/cargo "$cmd" "${args[@]}" --target aarch64-unknown-linux-gnu "${tool[@]}"
