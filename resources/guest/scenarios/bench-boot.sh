# L2 scenario bench-boot: nothing but a verdict, so that the VMM's run is
# L2's boot and poweroff (the boot figure of the nested benchmark suite,
# benches/nested/). booted= is L2's uptime when /init reached the scenario.
# Run by the L1 scenario bench-blk.
pass "booted=$(uptime_s)"
