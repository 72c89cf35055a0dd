"""Which pages of the runner's snapshot a session's first cell copies, and what
it wrote on them: the memory of a live session is mostly those pages.

Run with the package installed: python memprobe.py [CODE]   (CODE: the first
cell, `x = 1` by default). Linux only (reads /proc/self/maps and pagemap); a
diagnostic, not a test: nothing is asserted.

A session's linear memory is the compiled runner's image, mapped copy-on-write
(wasmtime's `memory_init_cow`) from the first page that holds data; a page the
guest writes becomes the session's own. Each changed 4-byte word of a copied
page (the session's page against the file's) is put down to the object of the
snapshot it falls in: its refcount (the first word), its GC header (just
before it), another field, or none that the garbage collector can reach (the
C stack, the interpreter's static data, malloc'd buffers, fresh allocations).
Objects and their addresses (`id()`: an offset into linear memory) come from a
second session of the same snapshot; those its own run made are left out.
"""

import ast
import bisect
import collections
import ctypes
import re
import struct
import sys

import witbox

PAGE = 4096

OBJECT_MAP = r"""
import gc, sys
gc.unfreeze()
def _label(o):
    t = type(o).__name__
    if t == 'code': return f'code {o.co_qualname} ({o.co_filename.rsplit("/", 1)[-1]})'
    if t == 'function': return f'function {o.__module__}.{o.__qualname__}'
    return t
_objs = gc.get_objects()
_ids = set(map(id, _objs))
_i = 0
while _i < len(_objs):  # and what they hold that the collector does not track
    for _r in gc.get_referents(_objs[_i]):
        if id(_r) not in _ids:
            _ids.add(id(_r)); _objs.append(_r)
    _i += 1
{id(o): (sys.getsizeof(o), _label(o), gc.is_tracked(o), id(type(o))) for o in _objs}
"""


def image_mappings():
    """(start, end) → (file offset, path) of the writable mappings of compiled
    runner files: one per live session."""
    found = {}
    with open("/proc/self/maps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+\s*(.*)$", line)
            if m and m.group(3).startswith("rw") and m.group(5).endswith(".cwasm"):
                found[(int(m.group(1), 16), int(m.group(2), 16))] = (int(m.group(4), 16), m.group(5))
    return found


def private_pages(start, end):
    """Indexes of the pages in [start, end) that are present and no longer the file's."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        data = f.read((end - start) // PAGE * 8)
    entries = struct.unpack(f"<{len(data) // 8}Q", data)
    return {i for i, e in enumerate(entries) if e >> 63 & 1 and not e >> 61 & 1}


def u32(raw, at):
    return struct.unpack_from("<I", raw, at)[0]


def main():
    code = sys.argv[1] if len(sys.argv) > 1 else "x = 1"
    keep = witbox.Session(warm_sessions=0)  # holds its slot, so the next one gets a fresh slot
    keep.run("1")
    before = image_mappings()
    s = witbox.Session(warm_sessions=0)
    ((start, end), (offset, path)), = ((k, v) for k, v in image_mappings().items() if k not in before)
    at_start = private_pages(start, end)
    s.run(code)
    copied = sorted(private_pages(start, end) - at_start)
    print(f"image: {(end - start) >> 20} MiB; pages copied at instantiation: {len(at_start)}; "
          f"by the first run of {code!r}: {len(copied)} ({len(copied) * PAGE >> 10} KiB)")

    # Where the mapping starts in linear memory: where objects' type words match.
    r = s.run("[(id(o), id(type(o))) for o in (__import__('sys'), print, len, 1.5, 'witbox')]")
    pairs = ast.literal_eval(r.value)
    base = next(
        k for k in range(0, 256 << 20, PAGE)
        if all(start <= start - k + a < end and u32(ctypes.string_at(start - k + a + 4, 4), 0) == t for a, t in pairs)
    )
    image = open(path, "rb")

    def original(linear, n):
        image.seek(offset + linear - base)
        return image.read(n)

    other = witbox.Session(warm_sessions=0, memory_mb=1024, max_output_bytes=64 << 20)
    r = other.run(OBJECT_MAP)
    if r.error:
        sys.exit(f"the object map failed: {r.error}")
    objects = {
        a: v[:3] for a, v in ast.literal_eval(r.value).items()
        if base <= a < base + end - start - 8 and u32(original(a + 4, 4), 0) == v[3]
    }
    starts = sorted(objects)

    def owner(linear):
        i = bisect.bisect_right(starts, linear + 8) - 1
        if i < 0:
            return "no object"
        a = starts[i]
        size, label, tracked = objects[a]
        if not a - (8 if tracked else 0) <= linear < a + size:
            return "no object"
        kind = label.split(" ")[0]
        where = "refcount" if linear == a else "GC header" if linear < a else "field"
        return f"{where} of a {kind}", label

    words = collections.Counter()
    page_reasons = []
    code_words = collections.Counter()
    for p in copied:
        now = ctypes.string_at(start + p * PAGE, PAGE)
        was = original(base + p * PAGE, PAGE)
        reasons = set()
        for w in range(0, PAGE, 4):
            if now[w:w + 4] != was[w:w + 4]:
                found = owner(base + p * PAGE + w)
                reason = found if isinstance(found, str) else found[0]
                if reason == "field of a code":
                    code_words[found[1]] += 1
                words[reason] += 1
                reasons.add(reason)
        page_reasons.append(reasons)

    same = sum(1 for rs in page_reasons if not rs)
    print(f"copied pages that read as the file's again (written back, as a refcount up and down): {same}")
    print("changed words, by what they belong to:")
    for reason, n in words.most_common(12):
        print(f"  {n:6}  {reason}")
    pages = collections.Counter(x for rs in page_reasons for x in rs)
    alone = collections.Counter(next(iter(rs)) for rs in page_reasons if len(rs) == 1)
    print("copied pages with such a word (and with no other kind):")
    for reason, n in pages.most_common(12):
        print(f"  {n:6} ({alone[reason]:4})  {reason}")
    print("code objects written (adaptive bytecode), by words:")
    for label, n in code_words.most_common(15):
        print(f"  {n:6}  {label}")


if __name__ == "__main__":
    main()
