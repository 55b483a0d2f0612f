# L2 scenario faults: the disk is a failing or a durable device-mapper
# device in L1 (L1 scenarios faults-ioerr and faults-flush).
# minivmm.faults=ioerr: sectors 8192-10239 fail. Reads there must fail,
#   writes there must fail by their fsync (the device's FLUSH), while
#   writes and reads elsewhere, before and after, work and read back; the
#   kernel's I/O errors must name only failing sectors.
# minivmm.faults=flush: three 256 KiB writes, each followed by fsync (a
#   FLUSH), then one without; after each it prints
#     MINIVMM-FLUSHED offset=BYTES sha256=H  /  MINIVMM-UNFLUSHED offset=BYTES sha256=H
#   then MINIVMM-KILL-ME, and waits to be killed.
mode="$(cmdline_arg minivmm.faults || echo none)"
modprobe virtio_blk 2>/dev/null
tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
    sleep 0.1
    tries=$((tries + 1))
done
[ -b /dev/vda ] || fail "no /dev/vda"

# rw_ok OFFSET_MB: a 256 KiB write at OFFSET_MB MiB with fsync reads back.
rw_ok() {
    dd if=/dev/urandom of=/tmp/p bs=4k count=64 2>/dev/null
    dd if=/tmp/p of=/dev/vda bs=4k seek=$(($1 * 256)) oflag=direct conv=fsync,notrunc 2>/dev/null || return 1
    a="$(sha256sum </tmp/p)"
    b="$(dd if=/dev/vda bs=4k skip=$(($1 * 256)) count=64 iflag=direct 2>/dev/null | sha256sum)"
    [ "${a%% *}" = "${b%% *}" ]
}

case "$mode" in
ioerr)
    rw_ok 1 || fail "write/read below the failing range"
    dd if=/dev/vda of=/dev/null bs=4k skip=1024 count=4 iflag=direct 2>/dev/null &&
        fail "a read of failing sectors succeeded"
    dd if=/dev/zero of=/dev/vda bs=4k seek=1100 count=4 oflag=direct conv=fsync,notrunc 2>/dev/null &&
        fail "a write+flush of failing sectors succeeded"
    rw_ok 8 || fail "write/read above the failing range after the errors"
    rw_ok 1 || fail "write/read below the failing range after the errors"
    # The guest kernel logs the sectors its reads got IOERR for (a failed
    # flush names no data sector).
    bad="$(dmesg | sed -n 's/.*I\/O error, dev vda, sector \([0-9]*\) op 0x0:(READ).*/\1/p')"
    [ -n "$bad" ] || { dmesg | tail -n 20; fail "the guest kernel logged no read I/O error"; }
    for s in $bad; do
        [ "$s" -ge 8192 ] && [ "$s" -lt 10240 ] || fail "I/O error at sector $s, outside the failing range"
    done
    pass "ioerr_sectors=$(echo $bad | tr ' ' ',')"
    ;;
flush)
    for mb in 1 3 5; do
        dd if=/dev/urandom of=/tmp/p bs=4k count=64 2>/dev/null
        dd if=/tmp/p of=/dev/vda bs=4k seek=$((mb * 256)) oflag=direct conv=fsync,notrunc 2>/dev/null ||
            fail "write+flush at $mb MiB"
        sum="$(sha256sum </tmp/p)"
        echo "MINIVMM-FLUSHED offset=$((mb << 20)) sha256=${sum%% *}"
    done
    dd if=/dev/urandom of=/tmp/p bs=4k count=64 2>/dev/null
    dd if=/tmp/p of=/dev/vda bs=4k seek=$((16 * 256)) oflag=direct conv=notrunc 2>/dev/null ||
        fail "unflushed write"
    sum="$(sha256sum </tmp/p)"
    echo "MINIVMM-UNFLUSHED offset=$((16 << 20)) sha256=${sum%% *}"
    echo "MINIVMM-KILL-ME"
    sleep 120
    fail "not killed"
    ;;
*) fail "minivmm.faults= must be ioerr or flush" ;;
esac
