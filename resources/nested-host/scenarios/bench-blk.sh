# L1 scenario bench-blk: the block and boot figures of the nested benchmark
# suite (benches/nested/run.sh). In this one L1 boot it runs L2 under
# minivmm and under QEMU (qemu-system-x86_64 -accel kvm -M q35, the L1
# image with QEMU: build.sh --with-qemu --with-fio) with the same L2
# kernel, 1 vCPU and 512 MiB, trial by trial, the two VMMs alternating
# which goes first (odd trials minivmm first, even trials QEMU first):
#   boot   the default L2 image, L2 scenario bench-boot (boot and poweroff)
#   fio    the L2 image with fio (/l2/initrd-fio.img), L2 scenario
#          bench-blk, on a raw image (in L1's tmpfs) on virtio-blk, per mode:
#            off     no IOMMU: minivmm --disk ...,iommu=off; QEMU without a
#                    virtio-iommu
#            lazy    the disk behind the VMM's virtio-iommu (minivmm
#                    iommu=on; QEMU virtio-iommu-pci and the disk with
#                    iommu_platform=on), the guest's iommu.strict=0
#            strict  the same with iommu.strict=1
# The VMM's console goes through a FIFO that this script reads line by line
# (and prints): at each `MINIVMM-BENCH-MARK M` line of the guest, and when
# the console ends, it reads the VMM's /proc/PID/stat and /proc/PID/status
# and prints
#   MINIVMM-BENCH-CPU vmm=V kind=K mode=M trial=N mark=M ticks=T guest_ticks=G vcpu_ticks=C hz=100 rss_kib=R uptime=S
# (T: utime + stime in clock ticks, G: the part of it the vCPUs spent in
# the guest, R: VmRSS; uptime: L1's /proc/uptime). minivmm
# runs with MINIVMM_LOG=info, and its `startup: first KVM_RUN N us after
# exec` line becomes
#   MINIVMM-BENCH-STARTUP vmm=minivmm kind=K mode=M trial=N first_kvm_run_us=N
# and its counters at exit (devices/src/perf.rs) become
#   MINIVMM-BENCH-COUNTERS vmm=minivmm kind=K mode=M trial=N pio_exits=.. ...
# After each VMM run:
#   MINIVMM-BENCH-RUN vmm=V kind=boot|fio mode=M trial=N rc=N seconds=S
# (S: L1 wall time from starting the VMM to its exit). L1's command line
# may carry (defaults in brackets)
#   minivmm.bench_trials=N [5]   minivmm.bench_modes=a,b [off,lazy,strict]
#   minivmm.bench_vmms=a,b [minivmm,qemu]   minivmm.bench_image_mib=N [256]
#   minivmm.bench_jobs=, bench_runtime=, bench_size=, bench_idle=: passed
#   to the guest (see resources/guest/scenarios/bench-blk.sh)
# Expected rc: 0 (every run exited 0).
. /scenarios/vfio.inc

trials="$(l1_cmdline_arg minivmm.bench_trials || echo 5)"
modes="$(l1_cmdline_arg minivmm.bench_modes || echo off,lazy,strict)"
vmms="$(l1_cmdline_arg minivmm.bench_vmms || echo minivmm,qemu)"
image_mib="$(l1_cmdline_arg minivmm.bench_image_mib || echo 256)"
guest_args=""
for key in jobs runtime size idle; do
    value="$(l1_cmdline_arg "minivmm.bench_$key")" && guest_args="$guest_args minivmm.bench_$key=$value"
done
command -v qemu-system-x86_64 >/dev/null || { echo "bench-blk: no QEMU in this L1 image (build.sh --with-qemu)"; exit 1; }
[ -f /l2/initrd-fio.img ] || { echo "bench-blk: no L2 image with fio (build.sh --with-fio)"; exit 1; }

work=/tmp/bench
mkdir -p "$work"
image="$work/disk.img"
dd if=/dev/zero of="$image" bs=1M count="$image_mib" 2>/dev/null || { echo "bench-blk: cannot create $image"; exit 1; }
fifo="$work/console"
mkfifo "$fifo"

# sample PID TAG MARK: prints the CPU line for PID (builtins only: a forked
# command could reap the VMM before its last sample).
sample() {
    s_pid="$1" s_tag="$2" s_mark="$3"
    stat=""
    { read -r stat <"/proc/$s_pid/stat"; } 2>/dev/null || return 0
    rss=0
    { while read -r key value _; do
        [ "$key" = VmRSS: ] && rss="$value"
    done <"/proc/$s_pid/status"; } 2>/dev/null
    read -r up _ </proc/uptime
    # The vCPU threads' share (minivmm's "vcpuN", QEMU's "CPU N/KVM"):
    # their utime + stime, fields 14 and 15 of the thread's stat, which are
    # the 12th and 13th words after the ") " that ends its name (a name
    # may hold spaces).
    vcpu=0
    for task in /proc/"$s_pid"/task/*; do
        comm=""
        { read -r comm <"$task/comm"; } 2>/dev/null || continue
        case "$comm" in
        vcpu[0-9]* | CPU\ [0-9]*/KVM) ;;
        *) continue ;;
        esac
        tstat=""
        { read -r tstat <"$task/stat"; } 2>/dev/null || continue
        # shellcheck disable=SC2086
        set -- ${tstat##*") "}
        vcpu=$((vcpu + ${12} + ${13}))
    done
    # utime and stime are fields 14 and 15, guest_time (the vCPUs' time in
    # the guest, which utime includes) field 43: after the three
    # arguments, positions 17, 18 and 46.
    # shellcheck disable=SC2086
    set -- "$s_pid" "$s_tag" "$s_mark" $stat
    echo "MINIVMM-BENCH-CPU $2 mark=$3 ticks=$((${17} + ${18})) guest_ticks=${46} vcpu_ticks=$vcpu hz=100 rss_kib=$rss uptime=$up"
}

# measured TAG COMMAND...: runs COMMAND (a VMM) with its console through
# the FIFO, sampling it at the guest's marks and at the console's end;
# returns its exit status.
measured() {
    tag="$1"
    shift
    read -r started _ </proc/uptime
    "$@" >"$fifo" 2>&1 </dev/null &
    pid=$!
    while IFS= read -r line; do
        echo "$line"
        case "$line" in
            *MINIVMM-BENCH-MARK\ *)
                mark="${line#*MINIVMM-BENCH-MARK }"
                sample "$pid" "$tag" "${mark%% *}"
                ;;
            *"info: counters: "*)
                counters="${line#*info: counters: }"
                echo "MINIVMM-BENCH-COUNTERS $tag $counters"
                ;;
            *"startup: first KVM_RUN "*)
                us="${line#*first KVM_RUN }"
                echo "MINIVMM-BENCH-STARTUP $tag first_kvm_run_us=${us%% *}"
                ;;
        esac
    done <"$fifo"
    sample "$pid" "$tag" exit
    wait "$pid"
    rc=$?
    read -r ended _ </proc/uptime
    echo "MINIVMM-BENCH-RUN $tag rc=$rc seconds=$(awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.2f", b - a }')"
    return "$rc"
}

# run_vmm VMM KIND MODE TRIAL: one L2 run.
run_vmm() {
    vmm="$1" kind="$2" mode="$3" trial="$4"
    tag="vmm=$vmm kind=$kind mode=$mode trial=$trial"
    cmdline="console=ttyS0 quiet panic=-1"
    initrd=/l2/initrd.img
    if [ "$kind" = boot ]; then
        cmdline="$cmdline minivmm.test=bench-boot"
    else
        initrd=/l2/initrd-fio.img
        cmdline="$cmdline minivmm.test=bench-blk minivmm.bench_vmm=$vmm minivmm.bench_mode=$mode minivmm.bench_trial=$trial$guest_args"
    fi
    iommu=off
    case "$mode" in
        lazy) iommu=on; cmdline="$cmdline iommu.strict=0" ;;
        strict) iommu=on; cmdline="$cmdline iommu.strict=1" ;;
    esac
    case "$vmm" in
        minivmm)
            disk=""
            [ "$kind" = boot ] || disk="--disk path=$image,iommu=$iommu"
            # shellcheck disable=SC2086
            measured "$tag" env MINIVMM_LOG=info minivmm --kernel /l2/vmlinuz --initrd "$initrd" \
                --cpus 1 --memory 512M $disk --cmdline "$cmdline"
            ;;
        qemu)
            devices=""
            platform=""
            if [ "$iommu" = on ]; then
                devices="-device virtio-iommu-pci"
                platform=",iommu_platform=on"
            fi
            [ "$kind" = boot ] || devices="$devices -drive file=$image,if=none,format=raw,id=d0 -device virtio-blk-pci,drive=d0,disable-legacy=on$platform"
            # debug-threads=on names QEMU's vCPU threads "CPU N/KVM" (for
            # sample's vCPU share); nothing else changes.
            # shellcheck disable=SC2086
            measured "$tag" qemu-system-x86_64 -accel kvm -M q35 -cpu host -smp 1 -m 512M \
                -name bench,debug-threads=on -nodefaults -vga none -display none -no-reboot -net none \
                -chardev stdio,id=con,signal=off -serial chardev:con -monitor none \
                -bios /usr/share/seabios/bios-256k.bin \
                -kernel /l2/vmlinuz -initrd "$initrd" -append "$cmdline" $devices
            ;;
        *) echo "bench-blk: unknown VMM $vmm (minivmm or qemu)"; return 1 ;;
    esac
}

status=0
trial=1
while [ "$trial" -le "$trials" ]; do
    order="$(echo "$vmms" | tr ',' ' ')"
    # Even trials run the VMMs in the reverse order.
    [ $((trial % 2)) -eq 1 ] || order="$(echo "$order" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')"
    for vmm in $order; do
        run_vmm "$vmm" boot none "$trial" || status=1
    done
    for mode in $(echo "$modes" | tr ',' ' '); do
        for vmm in $order; do
            run_vmm "$vmm" fio "$mode" "$trial" || status=1
        done
    done
    trial=$((trial + 1))
done
rm -rf "$work"
exit "$status"
