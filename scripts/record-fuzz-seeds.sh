#!/usr/bin/env bash
# Re-records the NBD fuzz seeds (tests/Nbd.Tests/Fuzz/Seeds/*.bin): what real clients (nbdinfo, nbdsh,
# qemu-io, qemu-img, nbd-client) send to a server, byte for byte, handshake included. The server is nbdkit's memory
# plugin with the fuzz device's size (1 MiB); socat's -r dumps the client-to-server direction of one
# connection. Needs nbdkit, socat, libnbd-bin, python3-libnbd (nbdsh), qemu-utils, nbd-client.
set -euo pipefail
# nbdsh runs "python3 -mnbd": Debian's python3 has the nbd module, a pyenv shim may not.
export PATH="/usr/bin:/bin:$PATH"
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib/prereqs.sh
. "$here/scripts/lib/prereqs.sh"
apt_ensure nbdkit socat libnbd-bin python3-libnbd qemu-utils nbd-client
out="$here/tests/Nbd.Tests/Fuzz/Seeds"
work="$(mktemp -d)"
trap 'kill "$(cat "$work/nbdkit.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$out"
nbdkit -U "$work/nbdkit.sock" -P "$work/nbdkit.pid" memory 1M
for _ in $(seq 50); do [ -S "$work/nbdkit.sock" ] && break; sleep 0.1; done
uri="nbd+unix:///mem?socket=$work/relay.sock"
head -c 32768 /dev/urandom > "$work/random.img"

# record NAME COMMAND...: one relayed connection per command (the tools below open exactly one).
record() {
    local name="$1"; shift
    rm -f "$work/relay.sock"
    socat -r "$out/$name.bin" "UNIX-LISTEN:$work/relay.sock" "UNIX-CONNECT:$work/nbdkit.sock" &
    local relay=$!
    for _ in $(seq 50); do [ -S "$work/relay.sock" ] && break; sleep 0.1; done
    "$@" > /dev/null
    wait "$relay"
    echo "$name: $(stat -c %s "$out/$name.bin") bytes"
}

record nbdinfo nbdinfo "$uri"
record nbdinfo-map nbdinfo --map "$uri"
record nbdsh nbdsh -u "$uri" -c '
h.pwrite(b"\xab" * 8192, 4096)
h.pread(4096, 0)
h.trim(4096, 4096)
h.zero(65536, 8192)
h.flush()
h.pwrite(b"\x01" * 512, 1048576 - 512, nbd.CMD_FLAG_FUA)
'
record qemu-io qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'read -P 0x5a 0 64k' -c 'discard 0 4k' -c 'write -z 8k 8k' "$uri"
record qemu-img-info qemu-img info -f raw "$uri"
record qemu-img-convert qemu-img convert -n -f raw -O raw "$work/random.img" "$uri"
# nbd-client's handshake (what the kernel client's user-space half sends). Without the nbd module it stops after
# the handshake, when it asks netlink for the device (exit 1): the transcript is the handshake and its close.
record nbd-client sh -c 'nbd-client -unix "$1" /dev/nbd0 -N mem -b 4096 || true' sh "$work/relay.sock"
