# L1 scenario hostile: a guest program drives minivmm's virtio-iommu with
# malformed and random input for 20 s (see hostile.inc and the guest
# scenario hostile); L1's edu is the endpoint. Expected rc: 0.
. /scenarios/hostile.inc
run_hostile hostile 1000 20
