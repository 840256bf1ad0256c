# ext4: mkfs (without its own discard, so that fstrim's discards are the ones the host sees), files, sync,
# umount, e2fsck -fn, disconnect, reconnect, remount, checksums, then delete the random files and fstrim
# (the text files stay, so the host can see them stored compressed).
. /zt/lib.sh
nbd_up /dev/nbd0
/usr/sbin/mke2fs -q -t ext4 -E nodiscard /dev/nbd0
mount -t ext4 /dev/nbd0 /mnt
i=0
while [ $i -lt 12 ]; do
  # Alternate random files (incompressible) and text (compressible), 1-3 MiB each.
  if [ $((i % 2)) -eq 0 ]; then
    dd if=/dev/urandom of=/mnt/file$i bs=1M count=$((i % 3 + 1)) 2>/dev/null
  else
    seq 1 $((120000 * (i % 3 + 1))) >/mnt/file$i
  fi
  i=$((i + 1))
done
(cd /mnt && sha256sum file* >/tmp/sums)
zt ext4.files "$(wc -l </tmp/sums)"
sync
umount /mnt
/usr/sbin/e2fsck -fn /dev/nbd0 >/tmp/fsck.log 2>&1 && fsck_rc=0 || fsck_rc=$?
zt ext4.fsck_rc "$fsck_rc"
[ "$fsck_rc" -eq 0 ] || cat /tmp/fsck.log
nbd_down /dev/nbd0
nbd_up /dev/nbd0
mount -t ext4 /dev/nbd0 /mnt
(cd /mnt && sha256sum -c /tmp/sums >/tmp/check.log 2>&1) && sums_rc=0 || sums_rc=$?
zt ext4.checksums_rc "$sums_rc"
rm /mnt/file*[02468]
zt ext4.files_kept "$(ls /mnt | grep -c '^file')"
sync
trimmed=$(/usr/sbin/fstrim -v /mnt | sed -n 's/.*(\([0-9]*\) bytes) trimmed.*/\1/p')
zt ext4.fstrim_bytes "${trimmed:-0}"
umount /mnt
nbd_down /dev/nbd0
