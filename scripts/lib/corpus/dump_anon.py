"""Writes the resident private anonymous pages of running processes to a file: what swap would receive.

For each PID it walks /proc/PID/maps for private anonymous mappings (no backing file: heaps, stacks,
[anon:...] and unnamed mappings), asks /proc/PID/pagemap which of their pages are present and not file or
shared pages (bit 63 set, bit 61 clear), and copies those pages from /proc/PID/mem. Needs root (ptrace access).
Each process contributes an equal share of BYTES; what one lacks the others make up.
Usage: python3 dump_anon.py BYTES OUT PID...
"""
import os
import struct
import sys

PAGE = 4096
PRESENT = 1 << 63
FILE_OR_SHARED = 1 << 61
SKIP = ("[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]")


def anon_pages(pid):
    """Addresses of the present private anonymous pages of pid, in address order."""
    pages = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split(maxsplit=5)
            perms, inode = fields[1], fields[4]
            name = fields[5].strip() if len(fields) > 5 else ""
            if perms[0] != "r" or perms[3] != "p" or inode != "0" or name in SKIP:
                continue
            if name and not (name.startswith("[heap") or name.startswith("[stack") or name.startswith("[anon")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            count = (end - start) // PAGE
            pagemap.seek(start // PAGE * 8)
            entries = struct.unpack(f"<{count}Q", pagemap.read(count * 8))
            pages.extend(start + i * PAGE for i, e in enumerate(entries) if e & PRESENT and not e & FILE_OR_SHARED)
    return pages


def main():
    total, out, pids = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
    want = total // PAGE
    found = {pid: anon_pages(pid) for pid in pids}
    # Equal shares, the shortfall of small processes handed to the larger ones.
    quota, left = {}, want
    for i, pid in enumerate(sorted(pids, key=lambda p: len(found[p]))):
        share = left // (len(pids) - i)
        quota[pid] = min(share, len(found[pid]))
        left -= quota[pid]
    if left:
        sys.exit(f"only {want - left} resident anonymous pages found, {want} wanted")
    written = 0
    with open(out, "wb") as dst:
        for pid in pids:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
            try:
                for addr in found[pid][: quota[pid]]:
                    try:
                        page = os.pread(fd, PAGE, addr)
                    except OSError:
                        page = b""
                    if len(page) != PAGE:
                        continue  # unmapped since the walk
                    dst.write(page)
                    written += 1
            finally:
                os.close(fd)
            print(f"  pid {pid}: {quota[pid]} of {len(found[pid])} pages", file=sys.stderr)
        # Pages that vanished between the walk and the copy are made up from the first process's others.
        extra = iter(found[pids[0]][quota[pids[0]]:])
        fd = os.open(f"/proc/{pids[0]}/mem", os.O_RDONLY)
        try:
            while written < want:
                page = os.pread(fd, PAGE, next(extra))
                if len(page) == PAGE:
                    dst.write(page)
                    written += 1
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
