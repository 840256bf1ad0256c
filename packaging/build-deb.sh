#!/usr/bin/env bash
# Builds the zramd Debian package with dpkg-deb from a self-contained publish (no .NET needed on the target).
#   packaging/build-deb.sh [OUTDIR] [--publish DIR]
# OUTDIR (default artifacts/) receives zramd_VERSION_amd64.deb, whose path is printed. --publish reuses a
# folder made by scripts/publish.sh instead of publishing again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$root/artifacts
publish=
while [ $# -gt 0 ]; do
  case $1 in
    --publish) publish=$2; shift 2 ;;
    -*) echo "build-deb.sh: unknown option $1" >&2; exit 64 ;;
    *) out=$1; shift ;;
  esac
done
version=$(cat "$here/VERSION")
work=$(mktemp -d "${TMPDIR:-/tmp}/zramd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$publish" ]; then
  publish=$work/publish
  "$root/scripts/publish.sh" "$publish"
fi

pkg=$work/pkg
# Depends below: what the self-contained executable loads, and what the units run. libssl3 is dlopen()ed by .NET's
# TLS (tls-mode), so no ldd shows it; without it a TLS listener aborts the process ("No usable version of libssl was
# found"). procps: zramd.service's ExecReload (/bin/kill); mount: zramd-swap.service's swapon and swapoff. e2fsprogs
# (mkfs.ext4) only for the optional scratch unit, so recommended, as nbd-client is for attaching by hand.
install -D -m 0755 "$publish/zramd" "$pkg/usr/bin/zramd"
for unit in zramd.service zramd-swap.service zramd-scratch.service mnt-zram.mount; do
  install -D -m 0644 "$root/systemd/$unit" "$pkg/lib/systemd/system/$unit"
done
install -D -m 0644 "$root/systemd/modules-load.conf" "$pkg/usr/lib/modules-load.d/zramd.conf"
install -D -m 0644 "$here/zramd.conf" "$pkg/etc/zramd/zramd.conf"
install -D -m 0644 "$here/needrestart.conf" "$pkg/etc/needrestart/conf.d/zramd.conf"
install -d "$pkg/usr/share/man/man8"
gzip -9n <"$here/zramd.8" >"$pkg/usr/share/man/man8/zramd.8.gz"
install -D -m 0644 "$root/README.md" "$pkg/usr/share/doc/zramd/README.md"

install -d "$pkg/DEBIAN"
installed_kib=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: zramd
Version: $version
Architecture: amd64
Maintainer: zramd developers <zramd@localhost>
Installed-Size: $installed_kib
Depends: libc6, libstdc++6, libgcc-s1, liblz4-1, libzstd1, libssl3, procps, mount
Recommends: nbd-client, e2fsprogs
Section: admin
Priority: optional
Description: compressed RAM block devices served over NBD
 zramd does what the kernel's zram driver does, as a userspace daemon: LZ4- or
 zstd-compressed 4 KiB pages in a zsmalloc-style pool, served as NBD exports.
 Attach one to /dev/nbdX (zramd attach, or nbd-client) and use it as swap or as
 an ext4 scratch disk; systemd units for both are included.
CONTROL
printf '%s\n' /etc/zramd/zramd.conf /etc/needrestart/conf.d/zramd.conf >"$pkg/DEBIAN/conffiles"
# Maintainer scripts: prerm stops the units at removal, but refuses while a zramd device is swap or mounted;
# postrm purge removes the units' enablement. See packaging/debian/.
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$pkg/DEBIAN/$script"
done

mkdir -p "$out"
deb=$out/zramd_${version}_amd64.deb
dpkg-deb --root-owner-group -Zgzip --build "$pkg" "$deb" >&2
echo "$deb"
