# attach: `zramd attach` binds the export to /dev/nbd0 without nbd-client (netlink), swap on it with discard
# and a fill larger than the guest, `zramd detach`; then the ioctl fallback on /dev/nbd1 with a raw pattern.
# The zramd in the image is a self-contained publish at /opt/zramd/zramd. ZT_SERVER says where the daemon
# listens (default: the host's, through the relay); with ZT_GUEST_DAEMON=1 the daemon runs in the guest.
. /zt/lib.sh
ZRAMD=/opt/zramd/zramd
server=${ZT_SERVER:-tcp:$NBD_HOST:$NBD_PORT}
if [ "${ZT_GUEST_DAEMON:-0}" = 1 ]; then
  server=unix:/run/zramd.sock
  $ZRAMD --listen "$server" --size "${ZT_GUEST_SIZE:-512M}" >/tmp/zramd.log 2>&1 &
  i=0
  while [ ! -S /run/zramd.sock ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  zt attach.daemon_start_seconds "$(cut -d' ' -f1 /proc/uptime)"
fi

$ZRAMD attach "$EXPORT" /dev/nbd0 --socket "$server" >/tmp/attach.log 2>&1 && rc=0 || rc=$?
cat /tmp/attach.log
zt attach.netlink_rc "$rc"
zt attach.netlink_output "$(head -n 1 /tmp/attach.log)"
zt attach.size_bytes "$(blockdev --getsize64 /dev/nbd0)"
/usr/sbin/mkswap /dev/nbd0 >/dev/null
/usr/sbin/swapon --discard --priority 100 /dev/nbd0
/zt/memfill "${ZT_FILL_MIB:-224}" "${ZT_FILL_RANDOM:-2048}" && rc=0 || rc=$?
zt attach.memfill_rc "$rc"
/usr/sbin/swapoff /dev/nbd0 && rc=0 || rc=$?
zt attach.swapoff_rc "$rc"
$ZRAMD detach /dev/nbd0 && rc=0 || rc=$?
zt attach.detach_rc "$rc"
sleep 0.5
zt attach.size_after_detach "$(blockdev --getsize64 /dev/nbd0 2>/dev/null || echo error)"

# The ioctl path: the attach command stays in the foreground (NBD_DO_IT) until detached.
$ZRAMD attach "$EXPORT" /dev/nbd1 --socket "$server" --ioctl >/tmp/attach-ioctl.log 2>&1 &
ioctl_pid=$!
i=0
while { [ "$(cat /sys/block/nbd1/size)" = 0 ] || [ ! -s /tmp/attach-ioctl.log ]; } && [ $i -lt 600 ]; do
  sleep 0.1
  i=$((i + 1))
done
zt attach.ioctl_output "$(head -n 1 /tmp/attach-ioctl.log)"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
dd if=/tmp/pattern of=/dev/nbd1 bs=1M seek=3 oflag=direct conv=notrunc 2>/dev/null
dd if=/dev/nbd1 of=/tmp/readback bs=1M skip=3 count=4 iflag=direct 2>/dev/null
zt attach.ioctl_written_sha256 "$(sha /tmp/pattern)"
zt attach.ioctl_readback_sha256 "$(sha /tmp/readback)"
$ZRAMD detach /dev/nbd1 && rc=0 || rc=$?
zt attach.ioctl_detach_rc "$rc"
wait "$ioctl_pid" && rc=0 || rc=$?
cat /tmp/attach-ioctl.log
zt attach.ioctl_exit "$rc"
