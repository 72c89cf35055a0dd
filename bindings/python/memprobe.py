"""Which pages of the runner's snapshot a session's first cell copies, and what
Python objects live on them: the memory of a live session is mostly those pages.

Run with the package installed: python memprobe.py [CODE]   (CODE: the first
cell, empty by default). Linux only (reads /proc/self/maps and pagemap); a
diagnostic, not a test: nothing is asserted.

The session's linear memory is the compiled runner's image, mapped copy-on-write
(wasmtime's `memory_init_cow`); a page the guest writes becomes the session's
own. Object addresses come from `id()` in a second session of the same snapshot
(wasm32 pointers are offsets into linear memory; the image starts at offset 0).
"""

import ast
import collections
import re
import struct
import sys

import witbox

PAGE = 4096


def image_mappings():
    """The writable mappings of compiled runner files: one per live session."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m and m.group(3).startswith("rw") and "witbox" in m.group(4) and m.group(4).endswith(".cwasm"):
                found.add((int(m.group(1), 16), int(m.group(2), 16)))
    return found


def private_pages(start, end):
    """Indexes of the pages in [start, end) that are present and no longer the file's."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read((end - start) // PAGE * 8)
    pages = set()
    for i in range(len(data) // 8):
        (entry,) = struct.unpack_from("<Q", data, i * 8)
        if entry >> 63 & 1 and not entry >> 61 & 1:
            pages.add(i)
    return pages


OBJECT_MAP = """
import gc, collections
gc.unfreeze()
_pages = collections.defaultdict(collections.Counter)
for _o in gc.get_objects():
    _pages[id(_o) // 4096][type(_o).__name__] += 1
{k: v.most_common(1)[0][0] for k, v in _pages.items()}
"""


def main():
    code = sys.argv[1] if len(sys.argv) > 1 else ""
    keep = witbox.Session(warm_sessions=0)  # holds its slot, so the next one gets a fresh slot
    keep.run("1")
    before = image_mappings()
    s = witbox.Session(warm_sessions=0)
    (start, end), = image_mappings() - before
    at_start = private_pages(start, end)
    s.run(code)
    copied = sorted(private_pages(start, end) - at_start)
    print(f"image: {(end - start) >> 20} MiB; pages copied at instantiation: {len(at_start)}; "
          f"by the first run of {code!r}: {len(copied)} ({len(copied) * PAGE >> 10} KiB)")

    other = witbox.Session(warm_sessions=0)
    r = other.run(OBJECT_MAP)
    if r.error:
        sys.exit(f"the object map failed: {r.error}")
    kinds = ast.literal_eval(r.value)
    tally = collections.Counter(kinds.get(p, "(no GC-tracked object)") for p in copied)
    print("the copied pages by the commonest GC-tracked object on them:")
    for kind, n in tally.most_common(15):
        print(f"  {n:4}  {kind}")
    runs = 0
    for i, p in enumerate(copied):
        runs += i == 0 or copied[i - 1] != p - 1
    print(f"in {runs} separate runs of pages")


if __name__ == "__main__":
    main()
