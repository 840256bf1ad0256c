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
