# attach-takeover: zramd B serves zram5; the admin binds it to /dev/nbd0 with `zramd attach` (netlink: the attach
# process configures the device and exits, the kernel holds the connection) and writes a pattern there. Then zramd A
# starts with `attach = /dev/nbd0`. Its connect gets EBUSY (the device is B's); /dev/nbd0 must stay B's device
# with B's data, whatever A does about it.
. /zt/lib.sh
zramd_b_on_nbd0 takeover
zt takeover.b_nbd0_pid "$(cat /sys/block/nbd0/pid 2>/dev/null)"
roundtrip /dev/nbd0 2 takeover.b_before

# zramd A, configured to attach /dev/nbd0 itself.
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
CONF
zramd_wait_serving 'serving zram0\|could not start'
sleep 2
if kill -0 "$(cat /tmp/zramd.pid)" 2>/dev/null; then zt takeover.a running; else zt takeover.a exited; fi
zt takeover.a_stale_log "$(grep -c 'left attached to a dead connection' /tmp/zramd.log)"
zt takeover.nbd0_size_after_a "$(cat /sys/block/nbd0/size)"
dd if=/dev/nbd0 of=/tmp/readback bs=1M skip=2 count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
zt takeover.read_after_a_rc "$rc"
zt takeover.readback_after_a_sha256 "$(sha /tmp/readback)"
kill -TERM "$(cat /tmp/zramd.pid)" 2>/dev/null || true
wait "$(cat /tmp/zramd.pid)" 2>/dev/null || true
$ZRAMD detach /dev/nbd0 >/dev/null 2>&1 || true
kill -TERM "$b_pid" 2>/dev/null || true
wait "$b_pid" 2>/dev/null || true
sed 's/^/zramd-a| /' /tmp/zramd.log
sed 's/^/zramd-b| /' /tmp/zramd-b.log
