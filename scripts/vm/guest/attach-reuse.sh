# attach-reuse: zramd A in the guest with `attach = /dev/nbd0`; the admin detaches /dev/nbd0 (zramd detach) and
# binds it to another NBD server (zramd B, its own socket and export), writes a pattern there, then A is stopped
# (SIGTERM). A's stop detaches what it attached itself: /dev/nbd0 is B's by then and must stay connected.
. /zt/lib.sh
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
CONF
zramd_wait_nbd0
zt reuse.a_nbd0_size "$(cat /sys/block/nbd0/size)"
$ZRAMD detach /dev/nbd0 && rc=0 || rc=$?
zt reuse.detach_rc "$rc"
i=0
while [ "$(cat /sys/block/nbd0/size)" != 0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
zt reuse.nbd0_size_after_detach "$(cat /sys/block/nbd0/size)"

# zramd B: another server, its own paths.
zramd_b_on_nbd0 reuse
roundtrip /dev/nbd0 2 reuse.b_before

# A stops.
kill -TERM "$(cat /tmp/zramd.pid)"
wait "$(cat /tmp/zramd.pid)" && rc=0 || rc=$?
zt reuse.a_exit "$rc"
sleep 1
zt reuse.nbd0_size_after_a_stop "$(cat /sys/block/nbd0/size)"
dd if=/dev/nbd0 of=/tmp/readback bs=1M skip=2 count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
zt reuse.read_after_a_stop_rc "$rc"
zt reuse.readback_after_a_stop_sha256 "$(sha /tmp/readback)"
sed 's/^/zramd-a| /' /tmp/zramd.log
$ZRAMD detach /dev/nbd0 >/dev/null 2>&1 || true
kill -TERM "$b_pid" 2>/dev/null || true
wait "$b_pid" 2>/dev/null || true
sed 's/^/zramd-b| /' /tmp/zramd-b.log
