# Helpers the guest test scripts share (sourced). The server is qemu's guestfwd at 10.0.2.100:10809, which
# the relay joins to zramd's Unix socket; ZT_EXPORT names the export (default zram0).
# busybox runs its own applets before $PATH, so util-linux and e2fsprogs tools are called by absolute path.
NBD_HOST=10.0.2.100
NBD_PORT=10809
EXPORT=${ZT_EXPORT:-zram0}

# zt KEY VALUE: one result line for the host test.
zt() { echo "ZT: $1=$2"; }

# nbd_up DEV [nbd-client options]: connect DEV to the export with 4 KiB blocks.
nbd_up() {
  local dev=$1
  shift
  /usr/sbin/nbd-client "$NBD_HOST" "$NBD_PORT" "$dev" -N "$EXPORT" -b 4096 "$@" >/tmp/nbd-client.log 2>&1 || {
    cat /tmp/nbd-client.log
    return 1
  }
}

nbd_down() { /usr/sbin/nbd-client -d "$1" >/dev/null 2>&1; }

# sha FILE: just the digest.
sha() { sha256sum "$1" | cut -d' ' -f1; }

# roundtrip DEV MIB KEY: 4 MiB of random bytes written to DEV at MIB MiB with O_DIRECT and read back; reports
# KEY_written_sha256 and KEY_readback_sha256.
roundtrip() {
  dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 2>/dev/null
  dd if=/tmp/pattern of="$1" bs=1M seek="$2" oflag=direct conv=notrunc 2>/dev/null
  dd if="$1" of=/tmp/readback bs=1M skip="$2" count=4 iflag=direct 2>/dev/null
  zt "$3_written_sha256" "$(sha /tmp/pattern)"
  zt "$3_readback_sha256" "$(sha /tmp/readback)"
}

# For the scripts that run zramd inside the guest (a self-contained publish at /opt/zramd/zramd).
ZRAMD=/opt/zramd/zramd
CTL=/run/zramd/zramd.ctl
SERVER=unix:/run/zramd/zramd.sock

# zramd_start: zramd with the configuration read from stdin (after a [zramd] section with $SERVER and $CTL),
# logging to /tmp/zramd.log; its pid in /tmp/zramd.pid.
zramd_start() {
  mkdir -p /etc/zramd /run/zramd
  { printf '[zramd]\nlisten = %s\ncontrol = %s\n' "$SERVER" "$CTL"; cat; } >/etc/zramd/zramd.conf
  $ZRAMD --config /etc/zramd/zramd.conf >/tmp/zramd.log 2>&1 &
  echo $! >/tmp/zramd.pid
}

# zramd_wait_nbd0: until the control socket is up and /dev/nbd0 (the daemon's own attach =) has a size, 60 s at most.
zramd_wait_nbd0() {
  local i=0
  while { [ ! -S "$CTL" ] || [ "$(cat /sys/block/nbd0/size)" = 0 ]; } && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
}

# zramd_wait_serving [PATTERN]: until zramd (/tmp/zramd.pid) logs "serving zram0" (or PATTERN, a grep pattern) or
# exits, 90 s at most.
zramd_wait_serving() {
  local i=0
  while kill -0 "$(cat /tmp/zramd.pid)" 2>/dev/null && ! grep -q "${1:-serving zram0}" /tmp/zramd.log && [ $i -lt 900 ]; do
    sleep 0.1
    i=$((i + 1))
  done
}

# zramd_b_on_nbd0 KEY: a second zramd (B, its paths under /run/zramd-b, pid in $b_pid) serving zram5 (32 MiB), bound
# to /dev/nbd0 with `zramd attach` (netlink: the attaching process exits, the kernel holds the connection); says
# KEY.b_attach_rc and KEY.b_nbd0_size.
zramd_b_on_nbd0() {
  local i=0 rc
  mkdir -p /run/zramd-b /etc/zramd
  cat >/etc/zramd/b.conf <<CONF
[zramd]
listen = unix:/run/zramd-b/b.sock
control = /run/zramd-b/b.ctl
lock-memory = no
[zram5]
zram-size = 32
CONF
  $ZRAMD --config /etc/zramd/b.conf >/tmp/zramd-b.log 2>&1 &
  b_pid=$!
  while [ ! -S /run/zramd-b/b.ctl ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  $ZRAMD attach zram5 /dev/nbd0 --socket unix:/run/zramd-b/b.sock >/tmp/attach-b.log 2>&1 && rc=0 || rc=$?
  cat /tmp/attach-b.log
  zt "$1.b_attach_rc" "$rc"
  zt "$1.b_nbd0_size" "$(cat /sys/block/nbd0/size)"
}
