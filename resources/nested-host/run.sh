#!/usr/bin/env bash
# Boots the nested host (L1) under QEMU TCG with the images from build.sh.
# The L1 serial console is this script's stdin/stdout.
# Usage: resources/nested-host/run.sh --images DIR [--mode test|demo]
#          [--scenarios a,b,c] [--timeout SECS] [--smp N] [--memory SIZE]
#          [--scenario-timeout SECS]
# Test mode runs QEMU under `timeout` (default 900 s); demo mode keeps the
# terminal in the foreground and has no time limit.
set -euo pipefail
# shellcheck source=resources/lib.sh
. "$(dirname "$0")/../lib.sh"

images="" mode=test scenarios="" limit=900 smp=4 memory=3G scenario_timeout=300
while [ $# -gt 0 ]; do
    case "$1" in
        --images) images="$2"; shift 2 ;;
        --mode) mode="$2"; shift 2 ;;
        --scenarios) scenarios="$2"; shift 2 ;;
        --timeout) limit="$2"; shift 2 ;;
        --smp) smp="$2"; shift 2 ;;
        --memory) memory="$2"; shift 2 ;;
        --scenario-timeout) scenario_timeout="$2"; shift 2 ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
[ -n "$images" ] || die "--images DIR is required"
for f in vmlinuz initrd.img; do
    [ -f "$images/$f" ] || die "missing $images/$f (run resources/nested-host/build.sh)"
done

append="console=ttyS0 quiet panic=-1 minivmm.mode=$mode minivmm.scenario_timeout=$scenario_timeout"
[ -z "$scenarios" ] || append="$append minivmm.scenarios=$scenarios"

qemu=(qemu-system-x86_64 -accel "tcg,thread=multi" -cpu max -M q35 -smp "$smp" -m "$memory"
    -nographic -no-reboot -nic none -kernel "$images/vmlinuz" -initrd "$images/initrd.img"
    -append "$append")

if [ "$mode" = demo ]; then
    log "booting the nested host (quit QEMU with Ctrl-a x)"
    exec "${qemu[@]}"
fi
log "booting the nested host: scenarios=$scenarios timeout=${limit}s"
exec timeout -s KILL "$limit" "${qemu[@]}" </dev/null
