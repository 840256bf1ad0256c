# attach-busy: `zramd attach --ioctl` aimed at a /dev/nbdN that is already in use must fail and leave that
# device alone. Two owners are tried:
# 1. /dev/nbd0, bound by the daemon itself through netlink (`attach = /dev/nbd0`): NBD_SET_SOCK is refused
#    (EINVAL, "Cannot use ioctl interface on a netlink controlled device").
# 2. /dev/nbd2, bound by another `zramd attach --ioctl` still in NBD_DO_IT: NBD_SET_SOCK is refused (EBUSY,
#    "Device being setup by another task").
# After each refused attach the device must still be connected and hold what was written to it.
. /zt/lib.sh
zramd_start <<CONF
[zram0]
zram-size = 64
attach = /dev/nbd0
[zram1]
zram-size = 64
CONF
zramd_wait_nbd0
roundtrip /dev/nbd0 5 busy.nbd0_before

# 1. A netlink-bound device.
$ZRAMD attach zram1 /dev/nbd0 --socket "$SERVER" --ioctl >/tmp/attach-nl.log 2>&1 && rc=0 || rc=$?
cat /tmp/attach-nl.log
zt busy.netlink_owned_attach_rc "$rc"
zt busy.netlink_owned_attach_output "$(head -n 1 /tmp/attach-nl.log)"
sleep 1
zt busy.nbd0_size_after "$(cat /sys/block/nbd0/size)"
dd if=/dev/nbd0 of=/tmp/readback bs=1M skip=5 count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
zt busy.nbd0_read_after_rc "$rc"
zt busy.nbd0_readback_after_sha256 "$(sha /tmp/readback)"

# 2. A device another process holds in NBD_DO_IT.
$ZRAMD attach zram1 /dev/nbd2 --socket "$SERVER" --ioctl >/tmp/attach-first.log 2>&1 &
first_pid=$!
i=0
while { [ "$(cat /sys/block/nbd2/size)" = 0 ] || [ ! -s /tmp/attach-first.log ]; } && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
roundtrip /dev/nbd2 3 busy.nbd2_before
$ZRAMD attach zram1 /dev/nbd2 --socket "$SERVER" --ioctl >/tmp/attach-second.log 2>&1 && rc=0 || rc=$?
cat /tmp/attach-second.log
zt busy.ioctl_owned_attach_rc "$rc"
zt busy.ioctl_owned_attach_output "$(head -n 1 /tmp/attach-second.log)"
sleep 1
zt busy.nbd2_size_after "$(cat /sys/block/nbd2/size)"
if kill -0 "$first_pid" 2>/dev/null; then zt busy.first_attach_running 1; else zt busy.first_attach_running 0; fi
dd if=/dev/nbd2 of=/tmp/readback bs=1M skip=3 count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
zt busy.nbd2_read_after_rc "$rc"
zt busy.nbd2_readback_after_sha256 "$(sha /tmp/readback)"

$ZRAMD detach /dev/nbd2 >/dev/null 2>&1 || true
wait "$first_pid" || true
cat /tmp/attach-first.log
kill -TERM "$(cat /tmp/zramd.pid)"
wait "$(cat /tmp/zramd.pid)" || true
sed 's/^/zramd| /' /tmp/zramd.log
