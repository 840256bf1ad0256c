# raw: 8 MiB of random bytes written with O_DIRECT at an unaligned-to-MiB offset over four connections
# (nbd-client -C 4: the kernel spreads requests over its sockets), disconnect, reconnect with one connection,
# read back with O_DIRECT. The host then reads the same range over NBD and compares digests.
. /zt/lib.sh
offset=$((37 * 1024 * 1024 + 3 * 4096))
zt raw.offset "$offset"
dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null
zt raw.written_sha256 "$(sha /tmp/pattern)"
nbd_up /dev/nbd0 -C 4
zt raw.size_bytes "$(blockdev --getsize64 /dev/nbd0)"
# The kernel's sockets are the guest's TCP connections to the forwarded server address.
zt raw.connections "$(netstat -tn | grep -c "$NBD_HOST:$NBD_PORT *ESTABLISHED")"
dd if=/tmp/pattern of=/dev/nbd0 bs=1M oflag=direct,seek_bytes seek="$offset" conv=notrunc 2>/dev/null
nbd_down /dev/nbd0
nbd_up /dev/nbd0
zt raw.connections_after_reconnect "$(netstat -tn | grep -c "$NBD_HOST:$NBD_PORT *ESTABLISHED")"
dd if=/dev/nbd0 of=/tmp/readback bs=1M iflag=direct,skip_bytes skip="$offset" count=8 2>/dev/null
zt raw.readback_sha256 "$(sha /tmp/readback)"
nbd_down /dev/nbd0
