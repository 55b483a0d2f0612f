# L1 scenario hostile-nopoll: the hostile guest program with
# --iommu-poll-us 0 (every request served on its kick, in the vCPU) and 4 s
# of random input. Expected rc: 0.
. /scenarios/hostile.inc
run_hostile hostile-nopoll 0 4
