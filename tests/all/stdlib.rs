//! The whole standard library in the Python sandbox, and asyncio without sockets.

use crate::support::*;

#[tokio::test]
async fn every_stdlib_module_imports_or_says_why_not() {
    let mut s = session("").await;
    // The list is CPython's own (`sys.stdlib_module_names`), not one of ours.
    let o = cell(
        &mut s,
        "import sys, importlib\n\
         ok, refused, bad = [], {}, []\n\
         for name in sorted(sys.stdlib_module_names):\n\
         \x20   try:\n\
         \x20       importlib.import_module(name)\n\
         \x20       ok.append(name)\n\
         \x20   except ModuleNotFoundError as e:\n\
         \x20       prefix = f'module `{name}` is not available in the witbox sandbox: '\n\
         \x20       if str(e).startswith(prefix) and len(str(e)) > len(prefix):\n\
         \x20           refused[name] = str(e)[len(prefix):]\n\
         \x20       else:\n\
         \x20           bad.append((name, str(e)))\n\
         \x20   except BaseException as e:\n\
         \x20       bad.append((name, repr(e)))\n\
         (len(ok), bad, refused)",
    )
    .await;
    let value = o.value.expect("a value");
    let (count, rest) = value
        .trim_start_matches('(')
        .split_once(", ")
        .expect("(count, bad, refused)");
    let count: usize = count.parse().unwrap();
    assert!(count >= 230, "only {count} stdlib modules import: {value}");
    assert!(
        rest.starts_with("[], {"),
        "modules that fail badly: {value}"
    );
    // What is refused, and why, in the sandbox's own words.
    for (module, why) in [
        ("bz2", "its C library is not in this build (`_bz2`)"),
        ("lzma", "its C library is not in this build (`_lzma`)"),
        ("tkinter", "it has no GUI (Tk is not in this build)"),
        ("curses", "it has no terminal"),
        ("msvcrt", "it is for Windows or macOS"),
        ("subprocess", "it has no processes"),
        ("socket", "it has no sockets"),
        ("ctypes", "it runs no native code"),
        (
            "ensurepip",
            "it has no pip: add packages to `[runner] packages` in the manifest",
        ),
    ] {
        assert!(
            rest.contains(&format!("'{module}': '{why}'")),
            "{module}: {why} not in {rest}"
        );
    }
}

#[tokio::test]
async fn submodules_are_there_and_refused_ones_say_why() {
    let mut s = session("").await;
    let o = cell(
        &mut s,
        "import importlib\n\
         names = 'email.mime.text xml.sax.handler json.tool importlib.metadata concurrent.futures \
         logging.handlers unittest.mock wsgiref.util dbm.dumb sqlite3.dump http.cookiejar \
         urllib.robotparser xml.parsers.expat compression.gzip asyncio.queues'.split()\n\
         [n for n in names if importlib.import_module(n) is None]",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("[]"), "{o:?}");
    for (module, why) in [
        (
            "compression.zstd",
            "its C library is not in this build (`_zstd`)",
        ),
        ("dbm.gnu", "its C library is not in this build (`_gdbm`)"),
        ("asyncio.__main__", "it runs a program at import"),
        ("encodings.mbcs", "it is for Windows or macOS"),
        ("socketserver", "it has no sockets"),
    ] {
        assert_import_refused(&mut s, module, why).await;
    }
    // A name no stdlib has is Python's own error, with where packages come from.
    let o = cell(&mut s, "import numpy").await;
    assert_eq!(
        error_of(&o),
        ("ModuleNotFoundError", "No module named 'numpy'")
    );
    assert!(o.error.unwrap().traceback.ends_with(
        "ModuleNotFoundError: No module named 'numpy'\nThe witbox sandbox has the standard \
             library and no other packages; add one to `[runner] packages` in the manifest.\n"
    ));
    let o = cell(&mut s, "import json.nothing").await;
    assert_eq!(
        error_of(&o),
        ("ModuleNotFoundError", "No module named 'json.nothing'")
    );
}

#[tokio::test]
async fn the_modules_users_missed_work() {
    let mut s = session("").await;
    let o = cell(
        &mut s,
        "import configparser, doctest, shelve, plistlib, wave, pdb, cProfile, pstats, getpass, io\n\
         from string.templatelib import Template\n\
         c = configparser.ConfigParser(); c.read_string('[db]\\nport = 5432\\n')\n\
         def double(x):\n    '''\n    >>> double(2)\n    4\n    '''\n    return 2 * x\n\
         tests = doctest.DocTestFinder().find(double, globs={'double': double})\n\
         failed = doctest.DocTestRunner().run(tests[0]).failed\n\
         with shelve.open('kept') as db:\n    db['k'] = [1, 2]\n\
         with shelve.open('kept') as db:\n    kept = db['k']\n\
         plist = plistlib.loads(plistlib.dumps({'a': 1}))\n\
         buf = io.BytesIO()\n\
         with wave.open(buf, 'wb') as w:\n    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(b'\\0\\0' * 80)\n\
         p = cProfile.Profile(); p.enable(); sum(range(1000)); p.disable()\n\
         calls = pstats.Stats(p).total_calls > 0\n\
         name = 'x'\n\
         t = t'hi {name}'\n\
         (c['db'].getint('port'), failed, kept, plist, len(buf.getvalue()), calls, type(t) is Template, t.values)",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("(5432, 0, [1, 2], {'a': 1}, 204, True, True, ('x',))"),
        "{o:?}"
    );
}

#[tokio::test]
async fn asyncio_runs_code_that_needs_no_sockets() {
    let mut s = session("").await;
    // asyncio.run, gather, sleep, timeouts.
    let o = cell(
        &mut s,
        "import asyncio, time\n\
         async def double(x, delay):\n    await asyncio.sleep(delay)\n    return 2 * x\n\
         async def main():\n\
         \x20   start = time.monotonic()\n\
         \x20   both = await asyncio.gather(double(1, 0.05), double(2, 0.05))\n\
         \x20   took = time.monotonic() - start\n\
         \x20   try:\n\
         \x20       async with asyncio.timeout(0.01):\n\
         \x20           await asyncio.sleep(1)\n\
         \x20   except TimeoutError:\n\
         \x20       timed_out = True\n\
         \x20   return both, took < 0.09, timed_out\n\
         asyncio.run(main())",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("([2, 4], True, True)"), "{o:?}");
    // A cell may await at the top level; its tasks live on between cells. (A
    // cell that does not await runs outside the loop, so `asyncio.run` works in it.)
    let o = cell(
        &mut s,
        "q = asyncio.Queue()\n\
         async def produce(n):\n    for i in range(n):\n        await q.put(i)\n    await q.put(None)\n\
         producer = asyncio.create_task(produce(3))\n\
         got = []\n\
         while (item := await q.get()) is not None:\n    got.append(item)\n\
         got",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("[0, 1, 2]"), "{o:?}");
    let o = cell(
        &mut s,
        "later = asyncio.create_task(double(21, 0))\nawait asyncio.sleep(0)\nproducer.done()",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("True"), "{o:?}");
    let o = cell(&mut s, "await later").await;
    assert_eq!(o.value.as_deref(), Some("42"), "{o:?}");
    // An async generator and `async for` at the top level, and final_answer inside a task.
    let o = cell(
        &mut s,
        "async def count(n):\n    for i in range(n):\n        yield i\n\
         total = 0\n\
         async for i in count(4):\n    total += i\n\
         async def answer():\n    final_answer(total)\n\
         await answer()",
    )
    .await;
    assert_eq!(o.final_answer, Some(serde_json::json!(6)), "{o:?}");
    // The error of a cell that awaits shows the user's frames only.
    let o = cell(&mut s, "async def boom():\n    1 / 0\nawait boom()").await;
    let e = o.error.unwrap();
    assert_eq!((e.kind.as_str(), e.line), ("ZeroDivisionError", Some(2)));
    assert!(
        !e.traceback.contains("asyncio") && !e.traceback.contains("aio.py"),
        "{}",
        e.traceback
    );
    // `reset` ends the session's loop; the next cell gets a new one.
    s.reset().await.unwrap();
    let o = cell(&mut s, "import asyncio\nawait asyncio.sleep(0, 'fresh')").await;
    assert_eq!(o.value.as_deref(), Some("'fresh'"), "{o:?}");
}

#[tokio::test]
async fn asyncio_refuses_what_needs_sockets_threads_or_processes() {
    let mut s = session("").await;
    for (code, message) in [
        (
            "await asyncio.open_connection('127.0.0.1', 80)",
            "asyncio.open_connection is not available in the witbox sandbox: it has no sockets",
        ),
        (
            "await asyncio.start_server(print, '127.0.0.1', 0)",
            "asyncio.start_server is not available in the witbox sandbox: it has no sockets",
        ),
        (
            "await asyncio.to_thread(print, 1)",
            "asyncio.to_thread is not available in the witbox sandbox: it has no threads",
        ),
        (
            "await asyncio.create_subprocess_exec('ls')",
            "asyncio.create_subprocess_exec is not available in the witbox sandbox: it has no processes",
        ),
        (
            "await asyncio.get_running_loop().getaddrinfo('example.com', 80)",
            "loop.getaddrinfo is not available in the witbox sandbox: it has no sockets",
        ),
        (
            "await asyncio.get_running_loop().run_in_executor(None, print)",
            "loop.run_in_executor is not available in the witbox sandbox: it has no threads",
        ),
    ] {
        let o = cell(&mut s, &format!("import asyncio\n{code}")).await;
        assert_eq!(error_of(&o), ("NotImplementedError", message), "{code}");
    }
    // Waiting for what nothing can deliver is an error at once, not a hang
    // until the timeout.
    let o = cell(&mut s, "await asyncio.Event().wait()").await;
    assert_eq!(
        error_of(&o),
        (
            "RuntimeError",
            "the event loop has nothing left to run: every task waits for something that \
             nothing will do (the witbox sandbox has no sockets, threads or signals to wake it)"
        )
    );
    assert!(!o.session_restarted);
    assert_eq!(
        cell(&mut s, "await asyncio.sleep(0, 'still here')")
            .await
            .value
            .as_deref(),
        Some("'still here'")
    );
}

#[tokio::test]
async fn tools_are_plain_calls_in_async_code() {
    let mut s = session("call-tools = [\"quadratic_*\"]").await;
    let o = cell(
        &mut s,
        "import asyncio\n\
         async def roots(a, b, c):\n    await asyncio.sleep(0)\n    return quadratic_solve(a, b, c)\n\
         await asyncio.gather(roots(1, -3, 2), roots(1, 0, -4))",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some(
            "[[{'re': 1.0, 'im': 0.0}, {'re': 2.0, 'im': 0.0}], [{'re': -2.0, 'im': 0.0}, {'re': 2.0, 'im': 0.0}]]"
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_cell_that_sleeps_in_asyncio_still_times_out() {
    let mut s = session("timeout-ms = 300").await;
    assert!(cell(&mut s, "import asyncio\nx = 1").await.ok());
    let o = cell(&mut s, "await asyncio.sleep(10)").await;
    assert_eq!(o.error.unwrap().kind, "Timeout");
    assert!(o.session_restarted);
    assert_eq!(cell(&mut s, "x").await.value.as_deref(), Some("1"));
}
