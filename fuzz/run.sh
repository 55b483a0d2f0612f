#!/usr/bin/env bash
# Builds and runs the fuzz targets: every target `cargo fuzz list` knows, or
# the ones named, for SECONDS each (default 60), starting from the
# checked-in seed corpus in corpus/<target>/. New inputs go to
# target/corpus/<target>/ (never into the checked-in seeds); a crash is
# saved under artifacts/<target>/ and makes the script fail.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# The toolchain is the repository's stable one: cargo-fuzz's nightly flags
# are accepted with RUSTC_BOOTSTRAP=1. AddressSanitizer works there and is
# the default; FUZZ_SANITIZER=none turns it off (about twice as many
# executions per second). FUZZ_JOBS=N runs N fuzzing processes per target,
# sharing what they find. FUZZ_MAX_LEN caps the input size (512 bytes by
# default: 40 to 60 virtio-iommu steps, and four times the executions per
# second of libFuzzer's 4096).
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
[ $# -gt 0 ] && shift
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
jobs=${FUZZ_JOBS:-1}
max_len=${FUZZ_MAX_LEN:-512}

# libFuzzer itself is C++, built by libfuzzer-sys.
# shellcheck source=resources/lib.sh
. ../resources/lib.sh
ensure_packages g++
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Release builds keep debug assertions and overflow checks (-a): an
# arithmetic overflow on a guest-chosen value is a crash.
for t in "${targets[@]}"; do
    cargo fuzz build -O -a -s "$sanitizer" "$t"
done

mkdir -p target/logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "corpus/$t"
    echo "== $t: ${seconds}s, sanitizer $sanitizer, $jobs process(es)"
    # N persistent processes sharing the new-input directory (each picks up
    # the others' finds), each with its own log.
    pids=()
    for j in $(seq 1 "$jobs"); do
        cargo fuzz run -O -a -s "$sanitizer" "$t" "target/corpus/$t" "corpus/$t" -- \
            -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 -timeout=10 \
            -rss_limit_mb=2048 -seed="$j" >"target/logs/$t.$j.log" 2>&1 &
        pids+=($!)
    done
    ok=1
    for p in "${pids[@]}"; do
        wait "$p" || ok=0
    done
    runs=0
    for j in $(seq 1 "$jobs"); do
        log="target/logs/$t.$j.log"
        n=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
        runs=$((runs + ${n:-0}))
        cov=$(grep -E 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
        [ "$ok" = 1 ] && echo "   process $j: ${n:-?} executions, ${cov:-coverage not reported}"
    done
    if [ "$ok" = 1 ]; then
        echo "   ok: $runs executions in all"
    else
        echo "   FAILED (logs: fuzz/target/logs/$t.*.log):"
        grep -hE 'panicked at|ERROR: |SUMMARY|Test unit written' target/logs/"$t".*.log | head -5 | sed 's/^/   /' || true
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz targets that crashed: ${failed[*]}"
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran without a crash"
