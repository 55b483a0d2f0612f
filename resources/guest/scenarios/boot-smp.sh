# L2 scenario boot-smp: the guest sees exactly minivmm.expect_cpus=N CPUs
# (online mask and /proc/cpuinfo) and the ACPI tables APIC, FACP and DSDT.
# Sourced by /init in a subshell; ends with pass or fail.

expect="$(cmdline_arg minivmm.expect_cpus || true)"
[ -n "$expect" ] || fail "no minivmm.expect_cpus= on the command line"

# count_cpu_list LIST: number of CPUs in a list such as 0-1,3.
count_cpu_list() {
    n=0
    for part in $(echo "$1" | tr ',' ' '); do
        case "$part" in
            *-*) n=$((n + ${part#*-} - ${part%-*} + 1)) ;;
            *) n=$((n + 1)) ;;
        esac
    done
    echo "$n"
}

online="$(cat /sys/devices/system/cpu/online)"
online_n="$(count_cpu_list "$online")"
cpuinfo_n="$(grep -c '^processor' /proc/cpuinfo)"
problems=""
[ "$online_n" = "$expect" ] || problems="$problems online=$online($online_n)!=$expect"
[ "$cpuinfo_n" = "$expect" ] || problems="$problems cpuinfo=$cpuinfo_n!=$expect"
for table in APIC FACP DSDT; do
    [ -e "/sys/firmware/acpi/tables/$table" ] || problems="$problems missing-acpi-$table"
done

[ -z "$problems" ] || fail "${problems# }"
pass "uptime=$(uptime_s)"
