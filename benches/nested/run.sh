#!/usr/bin/env bash
# The nested benchmark suite (issue 10; docs/performance.md): builds
# minivmm and the suite's runner, then boots the nested host twice (block
# I/O, boot, CPU and memory figures of minivmm and QEMU in one L1; map/unmap
# latency of both and L1's own floor in another) and prints the markdown
# tables, also written to target/nested/bench.md. Takes about 40 minutes
# on the project's 2-core machines. Arguments go to the runner
# (tests/src/bin/nested-bench.rs): --trials N, --runtime S, --idle S,
# --smoke (one short trial), --out FILE.
# Usage: bash benches/nested/run.sh [ARGS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
# shellcheck source=resources/lib.sh
. resources/lib.sh
command -v cargo >/dev/null || die "cargo not found (install rustup)"
ensure_pinned_rust "$root"
bash resources/host-packages.sh
log "building minivmm and the suite's runner"
cargo build --release -p vmm
cargo build --release -p minivmm-tests --bin nested-bench
exec "$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/nested-bench" "$@"
