# L1 scenario faults-flush: what a FLUSH answered OK covers is on stable
# storage. L2's disk is a dm device over a loop device; periodic writeback
# is off and this script keeps the dm device open, so data minivmm wrote
# but did not fdatasync stays in the dm device's page cache and never
# reaches the backing file. The guest (scenario faults, mode flush) writes
# and flushes, writes once more without flushing, and says
# MINIVMM-KILL-ME; minivmm is then killed with SIGKILL and the backing file
# read directly:
#   MINIVMM-BACKING offset=BYTES sha256=H   (for every region the guest named)
#   MINIVMM-FAULTS-HOST run=flush killed=yes|no
. /scenarios/faults.inc
dev="$(dm_disk durable "0 $FAULTS_SECTORS linear LOOP 0")" || { echo "faults: no dm device"; exit 1; }
writeback="$(cat /proc/sys/vm/dirty_writeback_centisecs)"
echo 0 >/proc/sys/vm/dirty_writeback_centisecs
exec 3<"$dev"
out=/tmp/faults/out
fifo=/tmp/faults/fifo
: >"$out"
mkfifo "$fifo"
minivmm --kernel /l2/vmlinuz --initrd /l2/initrd.img --disk "path=$dev" \
    --cmdline "console=ttyS0 quiet panic=-1 minivmm.test=faults minivmm.faults=flush" \
    >"$fifo" 2>/tmp/faults/err &
pid=$!
tee "$out" <"$fifo" &
tee_pid=$!
killed=no
while kill -0 "$pid" 2>/dev/null; do
    if grep -q MINIVMM-KILL-ME "$out"; then
        kill -KILL "$pid"
        killed=yes
        break
    fi
    sleep 0.1
done
wait "$pid"
wait "$tee_pid"
sed -n 's/.*MINIVMM-[A-Z]*FLUSHED offset=\([0-9]*\).*/\1/p' "$out" | while read -r off; do
    sum="$(dd if=/tmp/faults/durable.img bs=4096 skip=$((off / 4096)) count=64 2>/dev/null | sha256sum)"
    echo "MINIVMM-BACKING offset=$off sha256=${sum%% *}"
done
echo "MINIVMM-FAULTS-HOST run=flush killed=$killed"
exec 3<&-
echo "$writeback" >/proc/sys/vm/dirty_writeback_centisecs
rm -f "$fifo"
dm_remove durable
[ "$killed" = yes ]
