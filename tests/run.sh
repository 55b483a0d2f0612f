#!/usr/bin/env bash
# The project's test command: host packages, formatting, clippy (x86_64 and
# aarch64), unit tests, the release builds of minivmm for both, then the
# nested tests (an L1 Linux under QEMU
# TCG boots L2 guests with minivmm; see resources/nested-host/). Exits
# non-zero on the first failing step (all nested tests run, then it fails).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() {
    printf '\n=== %s\n' "$*"
}

command -v cargo >/dev/null || { echo "error: cargo not found (install rustup)" >&2; exit 1; }

# shellcheck source=resources/lib.sh
. resources/lib.sh
ensure_pinned_rust "$root"

step "host packages"
bash resources/host-packages.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (aarch64)"
bash resources/cargo-aarch64.sh clippy --workspace --all-targets -- -D warnings

step "unit tests"
cargo test --workspace

step "fuzz targets (${FUZZ_SECONDS:-60} s each)"
bash fuzz/run.sh "${FUZZ_SECONDS:-60}"

step "release build of minivmm"
cargo build --release -p vmm

step "release build of minivmm (aarch64)"
bash resources/cargo-aarch64.sh build --release -p vmm

step "nested tests"
cargo test --release --no-fail-fast -p minivmm-tests -- --include-ignored --nocapture --test-threads=1

step "all tests passed"
