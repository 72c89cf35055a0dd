"""The Python package's rows of `cargo xtask bench`: witbox from Python against
native `exec()` in the same process (and pyeryx, when it is installed).

Run with the release wheel installed in a clean venv: python bench.py (with
`pip install pyeryx==0.11.0` in a venv of CPython >= 3.12, pyeryx too).
Prints a markdown table; nothing is asserted.
"""

import functools
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


def after_pause(f, n):
    """The median time of one call of `f`, each after a 20 ms pause (a warm
    pool refills meanwhile)."""
    times = []
    for _ in range(n):
        time.sleep(0.02)
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def slope_mib(new, run, first, more):
    """What one more live session adds to the process (PSS, MiB): the slope from
    `first` to `first + more` sessions made by `new()`, each after a `run` of
    `x = 1`; the first ones' one-time costs (heap arenas) are left out. Returns
    it and the sessions, which the caller closes."""
    sessions = [new() for _ in range(first)]
    for x in sessions:
        run(x, "x = 1")
    before = pss_kib()
    extra = [new() for _ in range(more)]
    for x in extra:
        run(x, "x = 1")
    return (pss_kib() - before) / more / 1024, sessions + extra


def import_time():
    def wall(code):
        times = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return wall("import witbox") - wall("pass")


def pyeryx_rows():
    """pyeryx (eryx's Python binding, `pip install pyeryx`; CPython >= 3.12) on
    the same rows, keyed by row name; empty when it is not installed."""
    try:
        import eryx
    except ImportError:
        print("pyeryx is not installed: its column is skipped", file=sys.stderr)
        return {}
    out = {}
    s = eryx.Session()
    s.execute("1")
    t = per_call(lambda: s.execute("print(1+1)"), 1000)
    out[WARM] = f"pyeryx `Session.execute`: {fmt(t)}"
    out[AFTER] = f"pyeryx: {fmt(after_pause(lambda: s.execute('print(1+1)'), 20))}"
    eryx.Sandbox().execute("1")
    t = after_pause(lambda: eryx.Sandbox().execute("print(1+1)"), 20)
    out[FRESH] = f"pyeryx `Sandbox().execute`: {fmt(t)}"
    mib, _ = slope_mib(eryx.Session, eryx.Session.execute, 5, 20)
    out[MEMORY] = f"pyeryx `Session`: {mib:.2f} MiB"
    return out


WARM = "warm `session.run(\"print(1+1)\")`"
AFTER = "the same after a 20 ms pause"
FRESH = "`witbox.run(\"print(1+1)\")`: a fresh sandbox from the warm pool"
MEMORY = "memory of a live session (PSS, slope from 10 to 50 sessions)"


def main():
    rows = []
    # Warm the pool and the compile cache first.
    witbox.run("1")
    s = witbox.Session()
    s.run("1")

    devnull = open(os.devnull, "w")

    def native(code, globals_):
        """exec(code), its output thrown away."""
        saved = sys.stdout
        sys.stdout = devnull
        try:
            exec(code, globals_)
        finally:
            sys.stdout = saved

    native_print = functools.partial(native, compile("print(1+1)", "<cell>", "exec"), {})
    t_native = per_call(native_print, 20000)
    t_warm = per_call(lambda: s.run("print(1+1)"), 5000)
    rows.append((WARM, fmt(t_warm), f"native exec(): {fmt(t_native)}"))

    # A cell of statements: the runner compiles every cell it is sent, so native
    # compiles it each time too (exec() of the source), in globals that persist.
    loop = "total = 0\nfor i in range(10):\n    total += i\nprint(total)"
    t_loop = per_call(lambda: s.run(loop), 3000)
    rows.append((
        "the same with a 4-line cell (a loop, then `print(total)`)",
        fmt(t_loop),
        f"native compile() and exec(): {fmt(per_call(functools.partial(native, loop, {}), 20000))}",
    ))

    # A run after a pause is slower however warm its sandbox: the caches went cold
    # (on this VM, native exec() too). The same pause is the fresh run's baseline.
    rows.append((
        AFTER,
        fmt(after_pause(lambda: s.run("print(1+1)"), 100)),
        f"native exec() after the same pause: {fmt(after_pause(native_print, 100))}",
    ))
    # The pool refills in the background: each run is timed after a pause.
    rows.append((FRESH, fmt(after_pause(lambda: witbox.run("print(1+1)"), 100)), ""))
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

    # Memory: what one more live session adds to the process, each in a memory
    # slot of its own (the cost a server pays per concurrent session), after one
    # session has paged the runner's code in.
    w = witbox.Session(warm_sessions=0)
    w.run("x = 1")
    w.close()
    time.sleep(0.5)
    start = pss_kib()
    mib, sessions = slope_mib(lambda: witbox.Session(warm_sessions=0), witbox.Session.run, 10, 40)
    for x in sessions:
        x.close()
    time.sleep(1)  # closed instances are dropped on a worker thread
    kept = (pss_kib() - start) / 1024
    # The same again, in the memory slots the first 50 used (a long-lived process).
    reused, sessions = slope_mib(lambda: witbox.Session(warm_sessions=0), witbox.Session.run, 10, 40)
    for x in sessions:
        x.close()
    eryx = pyeryx_rows()
    rows.append((MEMORY, f"{mib:.2f} MiB", ""))
    rows.append(("  the same in memory slots that 50 closed sessions used", f"{reused:.2f} MiB", ""))
    rows.append(("memory the process keeps after those 50 sessions closed (PSS)", f"{kept:.1f} MiB", ""))
    for i, (name, value, base) in enumerate(rows):
        if name in eryx:
            rows[i] = (name, value, "; ".join(x for x in (base, eryx[name]) if x))

    print("| from Python | witbox | baseline |")
    print("|---|---|---|")
    for name, value, base in rows:
        print(f"| {name} | {value} | {base} |")


if __name__ == "__main__":
    main()
