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

# refused_attach NBD OWNER: `zramd attach --ioctl` of zram1 to /dev/NBD (held by OWNER), then /dev/NBD's size.
refused_attach() {
  local rc
  $ZRAMD attach zram1 "/dev/$1" --socket "$SERVER" --ioctl >"/tmp/attach-$2.log" 2>&1 && rc=0 || rc=$?
  cat "/tmp/attach-$2.log"
  zt "busy.$2_attach_rc" "$rc"
  zt "busy.$2_attach_output" "$(head -n 1 "/tmp/attach-$2.log")"
  sleep 1
  zt "busy.$1_size_after" "$(cat "/sys/block/$1/size")"
}

# read_after NBD MIB: what /dev/NBD holds at MIB MiB (4 MiB), to compare with what roundtrip wrote there.
read_after() {
  local rc
  dd if="/dev/$1" of=/tmp/readback bs=1M skip="$2" count=4 iflag=direct 2>/dev/null && rc=0 || rc=$?
  zt "busy.$1_read_after_rc" "$rc"
  zt "busy.$1_readback_after_sha256" "$(sha /tmp/readback)"
}

# 1. A netlink-bound device.
roundtrip /dev/nbd0 5 busy.nbd0_before
refused_attach nbd0 netlink_owned
read_after nbd0 5

# 2. A device another process holds in NBD_DO_IT.
$ZRAMD attach zram1 /dev/nbd2 --socket "$SERVER" --ioctl >/tmp/attach-first.log 2>&1 &
first_pid=$!
i=0
while { [ "$(cat /sys/block/nbd2/size)" = 0 ] || [ ! -s /tmp/attach-first.log ]; } && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
roundtrip /dev/nbd2 3 busy.nbd2_before
refused_attach nbd2 ioctl_owned
if kill -0 "$first_pid" 2>/dev/null; then zt busy.first_attach_running 1; else zt busy.first_attach_running 0; fi
read_after nbd2 3

$ZRAMD detach /dev/nbd2 >/dev/null 2>&1 || true
wait "$first_pid" || true
cat /tmp/attach-first.log
kill -TERM "$(cat /tmp/zramd.pid)"
wait "$(cat /tmp/zramd.pid)" || true
sed 's/^/zramd| /' /tmp/zramd.log
