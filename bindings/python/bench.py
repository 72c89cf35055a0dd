"""The Python package's rows of `cargo xtask bench`: witbox from Python against
native `exec()` in the same process (and pyeryx, when it is installed).

Run with the release wheel installed in a clean venv: python bench.py
Prints a markdown table; nothing is asserted.
"""

import os
import statistics
import subprocess
import sys
import time

import witbox


def per_call(f, n, repeat=5):
    """The median over `repeat` rounds of the mean time of one call, in seconds."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            f()
        rounds.append((time.perf_counter() - start) / n)
    return statistics.median(rounds)


def pss_kib():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def fmt(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def import_time():
    def wall(code):
        times = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return wall("import witbox") - wall("pass")


def main():
    rows = []
    # Warm the pool and the compile cache first.
    witbox.run("1")
    s = witbox.Session()
    s.run("1")

    native_globals = {}
    code = compile("print(1+1)", "<cell>", "exec")
    devnull = open(os.devnull, "w")

    def native():
        saved = sys.stdout
        sys.stdout = devnull
        try:
            exec(code, native_globals)
        finally:
            sys.stdout = saved

    t_native = per_call(native, 20000)
    t_warm = per_call(lambda: s.run("print(1+1)"), 5000)
    rows.append(("warm `session.run(\"print(1+1)\")`", fmt(t_warm), f"native exec(): {fmt(t_native)}"))

    # The pool refills in the background: each run is timed after a pause.
    fresh = []
    for _ in range(100):
        time.sleep(0.02)
        start = time.perf_counter()
        witbox.run("print(1+1)")
        fresh.append(time.perf_counter() - start)
    rows.append(("`witbox.run(\"print(1+1)\")`: a fresh sandbox from the warm pool", fmt(statistics.median(fresh)), ""))
    back_to_back = per_call(lambda: witbox.run("print(1+1)"), 50, repeat=3)
    rows.append(("the same, back to back (the pool cannot keep up: on demand)", fmt(back_to_back), ""))

    def ping() -> int:
        return 1

    with witbox.Session(tools=[ping], max_tool_calls=100_000) as cb:
        cb.run("ping()")
        n = 2000
        r = cb.run(
            f"import time\nt = time.perf_counter()\nfor _ in range({n}): ping()\n"
            f"(time.perf_counter() - t) / {n}"
        )
        t_cb = float(r.value)
    rows.append(("a host callback's round trip, timed inside the sandbox", fmt(t_cb), "native call: ~0.05 µs"))

    t_import = import_time()
    rows.append(("`import witbox` (the process's own start subtracted)", fmt(t_import), ""))

    witbox.Session(warm_sessions=0).close()  # its runner loaded first
    before = pss_kib()
    sessions = [witbox.Session(warm_sessions=0) for _ in range(50)]
    for x in sessions:
        x.run("x = 1")
    after = pss_kib()
    for x in sessions:
        x.close()
    rows.append(("memory of a live session (PSS, 50 sessions)", f"{(after - before) / 50 / 1024:.2f} MiB", ""))

    try:
        import pyeryx  # noqa: F401

        rows.append(("pyeryx", "installed, not measured here", ""))
    except ImportError:
        rows.append(("pyeryx", "not installed: skipped", ""))

    print("| from Python | witbox | baseline |")
    print("|---|---|---|")
    for name, value, base in rows:
        print(f"| {name} | {value} | {base} |")


if __name__ == "__main__":
    main()
