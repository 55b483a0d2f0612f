# L2 scenario boot-smp: the guest sees exactly minivmm.expect_cpus=N CPUs
# (online mask and /proc/cpuinfo) and its firmware description: on x86 the
# ACPI tables APIC, FACP and DSDT; on arm64 the device tree's cpu nodes,
# PSCI, the GICv3 ITS (an msi-controller) and the ECAM host bridge with
# its msi-map, printed as dt=... in the verdict.
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
dt=/sys/firmware/devicetree/base
details=""
if [ -d "$dt" ] && [ ! -d /sys/firmware/acpi/tables ]; then
    dt_cpus="$(ls -d "$dt"/cpus/cpu@* 2>/dev/null | wc -l)"
    [ "$dt_cpus" = "$expect" ] || problems="$problems dt-cpus=$dt_cpus!=$expect"
    grep -q psci-0.2 "$dt"/psci/compatible 2>/dev/null || problems="$problems no-dt-psci"
    its="$(ls -d "$dt"/intc@*/msi-controller@* 2>/dev/null | head -1)"
    [ -n "$its" ] && [ -e "$its/msi-controller" ] || problems="$problems no-dt-its"
    pcie="$(ls -d "$dt"/pcie@* 2>/dev/null | head -1)"
    [ -n "$pcie" ] && [ -e "$pcie/msi-map" ] || problems="$problems no-dt-msi-map"
    details=" dt=cpus:$dt_cpus,its:${its##*/},pci:${pcie##*/}"
else
    for table in APIC FACP DSDT; do
        [ -e "/sys/firmware/acpi/tables/$table" ] || problems="$problems missing-acpi-$table"
    done
fi

[ -z "$problems" ] || fail "${problems# }"
pass "uptime=$(uptime_s)$details"
