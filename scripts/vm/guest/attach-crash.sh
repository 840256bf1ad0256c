# attach-crash: zramd with `attach = /dev/nbd0` is killed (SIGKILL: a crash, the OOM killer), then started again with
# the same configuration, as systemd's Restart=on-failure does (systemd/zramd.service). Reports whether the second
# daemon comes up with /dev/nbd0 attached and serving.
. /zt/lib.sh
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
CONF
zramd_wait_nbd0
zt crash.first_nbd0_size "$(cat /sys/block/nbd0/size)"
kill -KILL "$(cat /tmp/zramd.pid)"
wait "$(cat /tmp/zramd.pid)" 2>/dev/null || true
sleep 2
zt crash.nbd0_size_after_kill "$(cat /sys/block/nbd0/size)"
cp /tmp/zramd.log /tmp/zramd-first.log
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
CONF
zramd_wait_serving
if kill -0 "$(cat /tmp/zramd.pid)" 2>/dev/null; then
  zt crash.second running
else
  wait "$(cat /tmp/zramd.pid)" && rc=0 || rc=$?
  zt crash.second "exited $rc"
fi
zt crash.second_error "$(grep -m1 'could not start' /tmp/zramd.log | sed 's/.*could not start: //')"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
dd if=/tmp/pattern of=/dev/nbd0 bs=1M seek=5 oflag=direct conv=notrunc 2>/dev/null && rc=0 || rc=$?
zt crash.write_rc "$rc"
dd if=/dev/nbd0 of=/tmp/readback bs=1M skip=5 count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
zt crash.read_rc "$rc"
zt crash.written_sha256 "$(sha /tmp/pattern)"
zt crash.readback_sha256 "$(sha /tmp/readback)"
kill -TERM "$(cat /tmp/zramd.pid)" 2>/dev/null || true
wait "$(cat /tmp/zramd.pid)" 2>/dev/null || true
sed 's/^/zramd-1| /' /tmp/zramd-first.log
sed 's/^/zramd-2| /' /tmp/zramd.log
