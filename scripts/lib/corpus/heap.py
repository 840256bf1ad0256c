"""Builds a real Python heap of about N MiB of resident anonymous memory, then prints 'ready' and waits.

The heap holds what Python programs hold: source lines, word-count dicts, tuples of numbers, small objects
with attributes, parsed JSON, compiled code objects and bytes, all from files installed on this machine.
Usage: python3 heap.py MIB
"""
import json
import os
import sys


def rss_anon_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) // 1024
    return 0


class Record:
    __slots__ = ("path", "line_no", "text", "length", "words", "score")

    def __init__(self, path, line_no, text):
        self.path = path
        self.line_no = line_no
        self.text = text
        self.length = len(text)
        self.words = text.split()
        self.score = (line_no * 2654435761 % 1000003) / 1000003.0


def files():
    roots = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/share/doc", "/usr/share/perl", "/usr/share/perl5",
             "/usr/share/dotnet", "/usr/lib/node_modules", "/usr/share"]
    seen = set()
    while True:
        for root in roots:
            for dirpath, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(dirpath, name)
                    if path not in seen and os.path.isfile(path):
                        seen.add(path)
                        yield path
        seen.clear()


def main():
    target = int(sys.argv[1])
    records, counts, numbers, blobs, documents, code = [], {}, [], [], [], []
    for path in files():
        if rss_anon_mib() >= target:
            break
        try:
            if os.path.getsize(path) > 4 << 20:
                continue
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if path.endswith(".json"):
            try:
                documents.append(json.loads(data))
            except ValueError:
                pass
        if path.endswith(".py"):
            try:
                code.append(compile(data, path, "exec"))
            except (SyntaxError, ValueError):
                pass
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            blobs.append(data)
            continue
        for i, line in enumerate(text.splitlines()):
            records.append(Record(path, i, line))
            for word in line.split():
                counts[word] = counts.get(word, 0) + 1
            numbers.append((i, len(line), hash(line) & 0xFFFF, len(line) / 80.0))
    sys.stdout.write("ready %d\n" % rss_anon_mib())
    sys.stdout.flush()
    sys.stdin.read()  # hold the heap until the caller closes our stdin


if __name__ == "__main__":
    main()
