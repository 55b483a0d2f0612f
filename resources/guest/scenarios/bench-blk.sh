# L2 scenario bench-blk: fio on the virtio-blk disk /dev/vda (the nested
# benchmark suite, benches/nested/; needs the L2 image with fio,
# guest-initramfs.sh --with-fio). The kernel command line carries
#   minivmm.bench_vmm=LABEL     the VMM running this guest (for the markers)
#   minivmm.bench_mode=M        off (no IOMMU in front of the disk), lazy or
#                               strict (behind the virtio-iommu; the guest's
#                               iommu.strict=0|1): checked against the disk's
#                               IOMMU group and its domain type
#   minivmm.bench_trial=N       the trial number (for the markers)
#   minivmm.bench_jobs=a,b      the fio jobs, in order (default all four):
#                               randread-qd1, randread-qd32 (4 KiB random
#                               reads at queue depth 1 and 32), randwrite
#                               (4 KiB random writes, queue depth 32),
#                               seqread-1m (1 MiB sequential reads, depth 1)
#   minivmm.bench_runtime=S     seconds per job (default 5)
#   minivmm.bench_size=MIB      the span of the disk the jobs use (default 64)
#   minivmm.bench_idle=S        seconds of idling after the jobs (default 10)
# Every job is fio with O_DIRECT and libaio, terse output version 3 with
# the percentiles 50 and 99, parsed here into
#   MINIVMM-BENCH-FIO vmm=L mode=M trial=N job=J iops=.. bw_kib=.. runtime_ms=..
#     p50_us=.. p99_us=.. error=..
# (completion latency). Around every job and the idle time the guest prints
#   MINIVMM-BENCH-MARK start:J / end:J / idle-start / idle-end / done
# and then sleeps half a second, so that the L1 scenario, which reads the
# VMM's CPU time from /proc/PID/stat at every mark, samples a quiet moment.
# Run by the L1 scenario bench-blk.

vmm="$(cmdline_arg minivmm.bench_vmm || echo unknown)"
mode="$(cmdline_arg minivmm.bench_mode || echo off)"
trial="$(cmdline_arg minivmm.bench_trial || echo 1)"
jobs="$(cmdline_arg minivmm.bench_jobs || echo randread-qd1,randread-qd32,randwrite,seqread-1m)"
runtime="$(cmdline_arg minivmm.bench_runtime || echo 5)"
size="$(cmdline_arg minivmm.bench_size || echo 64)"
idle="$(cmdline_arg minivmm.bench_idle || echo 10)"
booted="$(uptime_s)"
tag="vmm=$vmm mode=$mode trial=$trial"

command -v fio >/dev/null || fail "no fio in this L2 image (guest-initramfs.sh --with-fio)"
tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
[ -b /dev/vda ] || fail "no /dev/vda"

# The disk's PCI function, its IOMMU group and the group's domain type:
# DMA-FQ is lazy (batched) invalidation, DMA strict, none for mode off.
pci="$(readlink -f /sys/block/vda/device/..)"
group=none
gtype=none
if [ -e "$pci/iommu_group" ]; then
    group="$(basename "$(readlink "$pci/iommu_group")")"
    gtype="$(cat "/sys/kernel/iommu_groups/$group/type")"
fi
case "$mode:$gtype" in
    off:none | off:identity | lazy:DMA-FQ | strict:DMA) ;;
    *) fail "mode $mode, but the disk's IOMMU group is $group of type $gtype" ;;
esac

mark() {
    echo "MINIVMM-BENCH-MARK $1 $tag"
    sleep 0.5
}

# job_args JOB: fio's options for JOB.
job_args() {
    case "$1" in
        randread-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
        randread-qd32) echo "--rw=randread --bs=4k --iodepth=32" ;;
        randwrite) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
        seqread-1m) echo "--rw=read --bs=1M --iodepth=1" ;;
        *) return 1 ;;
    esac
}

for job in $(echo "$jobs" | tr ',' ' '); do
    args="$(job_args "$job")" || fail "unknown fio job $job"
    mark "start:$job"
    # Terse v3: fields 7, 8, 9, 18, 19 are the reads' KiB/s, IOPS, runtime
    # (ms) and completion latency p50 and p99 (us) as 50.000000%=N; 48, 49,
    # 50, 59, 60 the same for writes.
    # shellcheck disable=SC2086
    out="$(fio --name="$job" --filename=/dev/vda --direct=1 --ioengine=libaio $args \
        --size="${size}M" --runtime="$runtime" --time_based --thread --randrepeat=0 \
        --norandommap --output-format=terse --terse-version=3 --percentile_list=50:99 2>&1)" ||
        fail "fio $job failed: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    line="$(echo "$out" | grep '^3;' | tail -n 1)"
    [ -n "$line" ] || fail "fio $job printed no terse line: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
    case "$job" in
        randwrite) first=48 ;;
        *) first=7 ;;
    esac
    echo "$line" | awk -F';' -v f="$first" -v job="$job" -v tag="$tag" '{
        p50 = $(f + 11); sub(/.*=/, "", p50)
        p99 = $(f + 12); sub(/.*=/, "", p99)
        printf "MINIVMM-BENCH-FIO %s job=%s iops=%d bw_kib=%d runtime_ms=%d p50_us=%d p99_us=%d error=%d\n", tag, job, $(f + 1), $f, $(f + 2), p50, p99, $5
    }'
    mark "end:$job"
done
mark idle-start
sleep "$idle"
mark idle-end
echo "MINIVMM-BENCH-MARK done $tag"
pass "$tag group=$group type=$gtype booted=$booted"
