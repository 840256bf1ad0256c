# attach-tls: zramd in the guest with `tls-mode = required` (certificate and key at /etc/zramd/cert.pem, key.pem,
# put there by the host test) and `attach = /dev/nbd0`: the daemon's own attach is a socketpair inside the process,
# which the kernel's nbd driver (no TLS) reads. Reports whether the daemon came up with /dev/nbd0 attached, and what
# `zramd attach` over its Unix socket gives.
. /zt/lib.sh
zramd_start <<CONF
tls-mode = required
tls-certificate = /etc/zramd/cert.pem
tls-key = /etc/zramd/key.pem
[zram0]
zram-size = 64
attach = /dev/nbd0
[zram1]
zram-size = 64
CONF
i=0
while kill -0 "$(cat /tmp/zramd.pid)" 2>/dev/null && { [ ! -S "$CTL" ] || [ "$(cat /sys/block/nbd0/size)" = 0 ]; } && [ $i -lt 900 ]; do
  sleep 0.1
  i=$((i + 1))
done
if kill -0 "$(cat /tmp/zramd.pid)" 2>/dev/null; then
  zt tls.daemon running
else
  wait "$(cat /tmp/zramd.pid)" && rc=0 || rc=$?
  zt tls.daemon "exited $rc"
fi
zt tls.nbd0_size "$(cat /sys/block/nbd0/size)"
zt tls.daemon_error "$(grep -m1 'could not start' /tmp/zramd.log | sed 's/.*could not start: //')"
if [ "$(cat /sys/block/nbd0/size)" != 0 ]; then roundtrip /dev/nbd0 5 tls.nbd0; fi
$ZRAMD attach zram1 /dev/nbd1 --socket "$SERVER" >/tmp/attach.log 2>&1 && rc=0 || rc=$?
zt tls.attach_rc "$rc"
zt tls.attach_output "$(head -n 1 /tmp/attach.log)"
kill -TERM "$(cat /tmp/zramd.pid)" 2>/dev/null || true
wait "$(cat /tmp/zramd.pid)" 2>/dev/null || true
sed 's/^/zramd| /' /tmp/zramd.log
