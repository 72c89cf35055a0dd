//! The Python runner through the library: cell semantics, tools from Python,
//! sessions, and every limit, each with code written to break it.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};
use witbox::ErrorKind;

#[tokio::test]
async fn the_useful_standard_library_is_there() {
    let mut s = session("").await;
    let modules = "collections itertools functools math cmath statistics decimal fractions \
        random datetime calendar zoneinfo json csv re string textwrap difflib unicodedata heapq \
        bisect array struct base64 binascii hashlib hmac zlib gzip io copy pprint dataclasses \
        enum typing abc operator uuid html html.parser xml.etree.ElementTree xml.dom.minidom \
        urllib.parse ipaddress graphlib fnmatch shlex traceback time argparse ast codecs \
        contextlib contextvars copyreg colorsys dis email email.utils errno getopt gettext glob \
        inspect keyword linecache locale logging mimetypes numbers os pathlib pickle platform \
        pydoc queue quopri reprlib sched secrets shutil stringprep sys tarfile tempfile timeit \
        token tokenize tomllib types unittest warnings weakref zipfile sqlite3 optparse";
    let count = modules.split_whitespace().count();
    assert!(count >= 80, "only {count} modules listed");
    let code = format!(
        "import importlib\nbad = []\nfor m in {:?}.split():\n    try:\n        importlib.import_module(m)\n    except Exception as e:\n        bad.append(f'{{m}}: {{e!r}}')\nbad",
        modules
    );
    let o = cell(&mut s, &code).await;
    assert_eq!(o.value.as_deref(), Some("[]"), "{o:?}");
    // And they work, not only import.
    let o = cell(
        &mut s,
        "import hashlib, zlib, statistics, fractions, decimal, sqlite3, zoneinfo, datetime\n\
         db = sqlite3.connect(':memory:'); db.execute('create table t(x)'); db.execute('insert into t values (42)')\n\
         (hashlib.sha256(b'a').hexdigest()[:8], len(zlib.compress(b'x' * 100)), statistics.mean([1, 2, 3]),\n\
          str(fractions.Fraction(1, 3) + 1), str(decimal.Decimal('0.1') + decimal.Decimal('0.2')),\n\
          db.execute('select x from t').fetchone()[0])",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("('ca978112', 12, 2, '4/3', '0.3', 42)"),
        "{o:?}"
    );
}

#[tokio::test]
async fn what_the_sandbox_lacks_fails_with_a_clear_import_error() {
    let mut s = session("").await;
    for (module, why) in [
        ("subprocess", "it has no processes"),
        ("multiprocessing", "it has no processes"),
        ("selectors", "it has no sockets"),
        ("socket", "it has no sockets"),
        ("ssl", "it has no sockets"),
        ("ctypes", "it runs no native code"),
    ] {
        assert_import_refused(&mut s, module, why).await;
    }
    // A submodule is refused with its package.
    let o = cell(&mut s, "import multiprocessing.pool").await;
    assert_eq!(
        error_of(&o).1,
        "module `multiprocessing` is not available in the witbox sandbox: it has no processes"
    );
    // The network clients import (for what needs no network); connecting fails.
    let o = cell(
        &mut s,
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9/')",
    )
    .await;
    assert_eq!(
        error_of(&o),
        (
            "URLError",
            "<urlopen error [Errno 58] the witbox sandbox has no sockets>"
        )
    );
}

#[tokio::test]
async fn cells_behave_like_a_notebook() {
    let mut s = session("").await;
    let o = cell(&mut s, "x = 5 + 3\nx * 2").await;
    assert_eq!(o.value.as_deref(), Some("16"));
    let o = cell(&mut s, "print(x)\nNone").await;
    assert_eq!((o.stdout.as_str(), o.value.as_deref()), ("8\n", None));
    // The traceback shows the user's frames only, never the runner's.
    let o = cell(&mut s, "def f():\n    return 1 / 0\n\nf()").await;
    let e = o.error.unwrap();
    assert_eq!((e.kind.as_str(), e.line), ("ZeroDivisionError", Some(2)));
    assert!(
        e.traceback.starts_with(
            "Traceback (most recent call last):\n  File \"<cell 3>\", line 4, in <module>"
        ),
        "{}",
        e.traceback
    );
    assert!(!e.traceback.contains("app.py"), "{}", e.traceback);
    assert!(
        e.traceback
            .ends_with("ZeroDivisionError: division by zero\n")
    );
    // A syntax error has a line and a column.
    let o = cell(&mut s, "a = 1\nb = (2 +\n").await;
    let e = o.error.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.line, e.column),
        ("SyntaxError", Some(2), Some(5))
    );
    // reset() forgets everything.
    s.reset().await.unwrap();
    let o = cell(&mut s, "x").await;
    assert_eq!(error_of(&o).0, "NameError");
    let o = cell(&mut s, "__name__").await;
    assert_eq!(o.value.as_deref(), Some("'__main__'"));
}

/// The runner finds a cell's last expression without the AST when it can (it cuts
/// the source at the last line at column 0): every shape that could fool a cut.
#[tokio::test]
async fn a_cell_shows_its_last_expression_whatever_its_shape() {
    let mut s = session("").await;
    let cases: &[(&str, Option<&str>)] = &[
        ("x = 1\nx", Some("1")),
        ("x = 1\n[i\nfor i in range(3)]", Some("[0, 1, 2]")), // `for` at column 0, in brackets
        ("a = 1\n(a if a\nelse 2)", Some("1")),
        ("x = 1\n\"\"\"\ndef f(): \"\"\"", Some("'\\ndef f(): '")), // `def` in a string
        ("x = 1\n'''\nx'''", Some("'\\nx'")),
        ("*range(2), 3", Some("(0, 1, 3)")), // eval refuses starred items
        ("x = 1\n*range(2), x", Some("(0, 1, 1)")),
        ("x = 2 * 3", None),
        ("x = 1; x", Some("1")),
        ("import math; math.floor(2.5)", Some("2")),
        ("import math", None),
        ("def f():\n    return 1\nf()", Some("1")),
        ("def f():\n    return 1\n\n# done\n", None),
        ("if True:\n    y = 1\nelse:\n    y = 2", None),
        ("if True:\n    y = 1\nelse:\n    y = 2\ny", Some("1")),
        ("for i in range(2): pass\ni", Some("1")),
        ("for i in range(2): i; 5", None), // `; 5` is the loop's body
        ("x = 1\nimport os; 5", Some("5")),
        ("x = 1 \\\n + 1\nx", Some("2")), // a backslash continuation
        ("x = (1 +\n2)\nx * 10", Some("30")),
        (
            "def deco(f):\n    return 9\n@deco\ndef g(): pass\ng",
            Some("9"),
        ),
        ("x = 1\r\nx + 1", Some("2")),
        ("x = 1\rx + 2", Some("3")),     // a bare CR breaks lines too
        ("x = 1\n\x0cx + 3", Some("4")), // a form feed at column 0
        ("def f():\n    return 1\n\x0c4", Some("4")),
        ("class C:\n    v = 4\nC.v", Some("4")),
        ("'''doc'''\nx = 5\n(x, __doc__)", Some("(5, 'doc')")),
        ("x = 1\n  # an indented comment\nx", Some("1")),
        ("async def a():\n    return 6\nawait a()", Some("6")),
        ("x = [1,\n2]\nx", Some("[1, 2]")),
        ("x = 7\nx\n\n", Some("7")),
        ("(lambda: 8)()", Some("8")),
        ("y = 8\nnot y", Some("False")),
        ("x = 1\nNone", None),
        ("print(end='')\n10", Some("10")),
        ("def h():\n    return 1", None), // one block
        ("if True:\n    12", None),
        ("for i in range(2):\n    i\n\n# done", None),
        ("try:\n    13\nfinally:\n    pass", None),
        ("# first\nfor i in range(2):\n    i", None),
        // Assignments skip the compile as an expression; comparisons and keywords do not.
        ("x = 1\nx <= 2", Some("True")),
        ("x = 1\nx == 1", Some("True")),
        ("x=1\nx != 1", Some("False")),
        ("x = 1\nx += 1", None),
        ("x = [0]\nx[0] = 5\nx", Some("[5]")),
        ("f = lambda q=1: q\nf(q=3)", Some("3")),
        ("x = (y := 4)\ny", Some("4")),
    ];
    for (code, value) in cases {
        s.reset().await.unwrap();
        let o = cell(&mut s, code).await;
        assert!(o.error.is_none(), "{code:?}: {:?}", o.error);
        assert_eq!(o.value.as_deref(), *value, "{code:?}");
    }
    // Errors keep their lines, in either part of a cut cell.
    let o = cell(&mut s, "x = 1\n\n\n1 / 0").await;
    let e = o.error.unwrap();
    assert_eq!((e.kind.as_str(), e.line), ("ZeroDivisionError", Some(4)));
    assert!(
        e.traceback.contains(", line 4, in <module>"),
        "{}",
        e.traceback
    );
    let o = cell(&mut s, "1 / 0\nx = 1\nx").await;
    assert_eq!(o.error.unwrap().line, Some(1));
    let o = cell(&mut s, "for i in range(3):\n    print(i)\n    1 / (1 - i)").await;
    assert_eq!(
        (o.stdout.as_str(), o.error.unwrap().line),
        ("0\n1\n", Some(3))
    );
    for (code, line, column) in [
        ("x = 1\n)", 2, 1),
        ("x = 1\nfor i in range(3)\n    pass", 2, 18),
        ("x = (1,\ny = 2\ny", 1, 5),
        ("for i in range(3)\n    pass", 1, 18),
    ] {
        let e = cell(&mut s, code).await.error.unwrap();
        assert_eq!(
            (e.kind.as_str(), e.line, e.column),
            ("SyntaxError", Some(line), Some(column)),
            "{code:?}: {}",
            e.message
        );
    }
}

#[tokio::test]
async fn final_answer_ends_the_run_and_survives_a_bare_except() {
    let mut s = session("").await;
    let o = cell(&mut s, "final_answer({'roots': [1, 2]})").await;
    assert_eq!(o.final_answer, Some(json!({"roots": [1, 2]})));
    // Not JSON: its repr.
    let o = cell(&mut s, "final_answer({1, 2})").await;
    assert_eq!(o.final_answer, Some(json!("{1, 2}")));
    // Even `except:` cannot replace the first answer.
    let o = cell(
        &mut s,
        "try:\n    final_answer('first')\nexcept:\n    pass\nfinal_answer('second')",
    )
    .await;
    assert_eq!((o.final_answer, o.error), (Some(json!("first")), None));
    // The next run starts without an answer.
    let o = cell(&mut s, "1").await;
    assert_eq!(o.final_answer, None);
}

#[tokio::test]
async fn code_with_a_nul_byte_is_invalid_input() {
    let mut s = session("").await;
    let e = s.run("print('a')\0").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArguments);
    assert_eq!(e.message, "the code contains a NUL byte");
    assert_eq!(cell(&mut s, "print('next')").await.stdout, "next\n");
}

#[tokio::test]
async fn granted_tools_are_python_functions() {
    let mut s = session("call-tools = [\"quadratic_*\"]").await;
    assert_eq!(s.tools(), ["quadratic_solve"]);
    let o = cell(
        &mut s,
        "import inspect\n(str(inspect.signature(quadratic_solve)), quadratic_solve(1, -3, 2) == quadratic_solve(a=1, b=-3, c=2), tools())",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("('(a, b, c)', True, ['quadratic_solve'])"),
        "{o:?}"
    );
    assert_eq!(o.tool_calls, 2);
    let o = cell(&mut s, "help(quadratic_solve)").await;
    assert!(
        o.stdout.contains("quadratic_solve(a, b, c)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("a (number): The coefficient of x²."),
        "{}",
        o.stdout
    );
    // A tool's own error is a ToolError with kind `failed` and the tool's error value.
    let o = cell(
        &mut s,
        "try:\n    quadratic_solve(0, 0, 1)\nexcept ToolError as e:\n    r = (e.tool, e.kind, e.error)\nr",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("('quadratic_solve', 'failed', 'no-solution')")
    );
    // The host checks arguments against the schema before the tool runs.
    let o = cell(&mut s, "quadratic_solve(a='x', b=1, c=2)").await;
    assert_eq!(
        error_of(&o),
        (
            "ToolError",
            "invalid arguments for `quadratic_solve`: `a`: expected a number, got the string \"x\""
        )
    );
    // Python checks the call against the signature.
    let o = cell(&mut s, "quadratic_solve(1, 2)").await;
    assert_eq!(
        o.error.unwrap().message,
        "quadratic_solve(): missing a required argument: 'c'"
    );
}

#[tokio::test]
async fn tools_not_granted_do_not_exist_and_the_raw_import_is_denied() {
    let mut s = session("").await;
    let o = cell(&mut s, "quadratic_solve(1, -3, 2)").await;
    assert_eq!(error_of(&o).0, "NameError");
    let o = cell(
        &mut s,
        "from wit_world.imports import host\ntry:\n    host.call_tool('quadratic_solve', '{\"a\": 1, \"b\": -3, \"c\": 2}')\nexcept Exception as e:\n    r = repr(e.value)\nr",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some(
            "\"ToolError_Denied(value='`runner` may not call `quadratic_solve`: it is not in its `call-tools`')\""
        ),
        "{o:?}"
    );
}

#[tokio::test]
async fn tool_calls_per_run_are_limited() {
    let mut s = session("call-tools = [\"quadratic_solve\"]\nmax-tool-calls = 3").await;
    let o = cell(
        &mut s,
        "n = 0\nfor i in range(10):\n    try:\n        quadratic_solve(1, -3, 2)\n        n += 1\n    except ToolError:\n        pass\nprint(n)",
    )
    .await;
    assert_eq!(o.stdout, "3\n");
    assert_eq!(o.tool_calls, 3);
    assert_eq!(
        error_of(&o),
        (
            "ToolCallLimit",
            "the run reached its limit of 3 tool calls (`max-tool-calls`)"
        )
    );
    // The count starts again with each run.
    let o = cell(
        &mut s,
        "quadratic_solve(1, -3, 2); quadratic_solve(1, -3, 2)",
    )
    .await;
    assert!(o.ok(), "{o:?}");
}

#[tokio::test]
async fn a_spin_is_stopped_and_the_session_restarts_from_its_checkpoint() {
    let mut s = session("timeout-ms = 300").await;
    cell(&mut s, "x = 1").await;
    for code in [
        "while True:\n    pass",
        "sum(range(10**12))",
        "import time\ntime.sleep(10)",
    ] {
        let started = Instant::now();
        let o = cell(&mut s, code).await;
        // A limit check, not a benchmark: the limit plus 1 s.
        assert!(started.elapsed() < Duration::from_millis(1300), "{code}");
        assert_eq!(
            error_of(&o),
            (
                "Timeout",
                "the run was stopped after its time limit of 300 ms"
            ),
            "{code}"
        );
        assert!(o.session_restarted);
        assert_eq!(
            o.restart_reason,
            Some(witbox::python::RestartReason::Timeout)
        );
        assert!(o.globals_restored);
    }
    // The session lives on, with the globals of the last completed cell.
    let o = cell(&mut s, "x").await;
    assert_eq!(o.value.as_deref(), Some("1"));
    // The deadline is re-armed for every run: a fast run after a slow one is fine.
    let o = cell(&mut s, "import time\ntime.sleep(0.2)\n'ok'").await;
    assert_eq!(o.value.as_deref(), Some("'ok'"));
    let o = cell(&mut s, "time.sleep(0.2)\n'ok'").await;
    assert_eq!(o.error, None, "{o:?}");
}

#[tokio::test]
async fn a_memory_bomb_is_a_memory_error_and_the_session_survives() {
    let mut s = session("memory-mb = 64").await;
    cell(&mut s, "keep = 'still here'").await;
    for code in [
        "b = bytes(10**9)",
        "l = []\nwhile True:\n    l.append(bytes(10**6))",
    ] {
        let o = cell(&mut s, code).await;
        assert_eq!(
            error_of(&o),
            (
                "MemoryError",
                "the session reached its memory limit of 64 MiB (`memory-mb`)"
            ),
            "{code}"
        );
        assert!(!o.session_restarted);
    }
    let o = cell(&mut s, "del l\nkeep").await;
    assert_eq!(o.value.as_deref(), Some("'still here'"));
}

#[tokio::test]
async fn an_output_flood_is_cut_at_the_limit_with_a_marker() {
    let mut s = session("max-output-bytes = 1000").await;
    let o = cell(&mut s, "for i in range(10**7):\n    print(i)").await;
    assert_eq!(
        error_of(&o),
        (
            "OutputLimit",
            "the run wrote more than its output limit, so it was stopped"
        )
    );
    let marker = "\n[witbox: output truncated: the run reached its limit of 1000 bytes]\n";
    assert!(o.stdout.ends_with(marker), "{:?}", o.stdout);
    assert_eq!(o.stdout.len(), 1000 + marker.len());
    assert!(o.stdout.starts_with("0\n1\n2\n"));
    // `except BaseException` does not get past the limit either.
    let o = cell(&mut s, "for i in range(10**4):\n    try:\n        print('x' * 100)\n    except BaseException:\n        pass\n'done'").await;
    assert_eq!(error_of(&o).0, "OutputLimit");
    assert!(o.stdout.len() <= 1000 + marker.len());
    // The session is fine.
    assert_eq!(cell(&mut s, "print('ok')").await.stdout, "ok\n");
}

#[tokio::test]
async fn fuel_is_deterministic_and_enforced() {
    let policy = "fuel = 2000000000";
    let code = "import json\nsum(len(json.dumps(list(range(i)))) for i in range(200))";
    let mut a = session(policy).await;
    let mut b = session(policy).await;
    let (x, y) = (cell(&mut a, code).await, cell(&mut b, code).await);
    assert!(x.ok() && y.ok(), "{x:?}");
    assert!(x.fuel_used.unwrap() > 1_000_000);
    assert_eq!(x.fuel_used, y.fuel_used);
    let mut s = session("fuel = 5000000").await;
    let o = cell(&mut s, "while True:\n    pass").await;
    assert_eq!(
        o.error.unwrap().message,
        "the run used up its fuel of 5000000"
    );
    assert!(o.session_restarted);
    assert!(cell(&mut s, "1").await.ok());
}

#[tokio::test]
async fn nothing_of_the_host_is_reachable() {
    let mut s = session("").await;
    for (code, kind, message) in [
        (
            "open('/etc/passwd')",
            "FileNotFoundError",
            "[Errno 44] No such file or directory: '/etc/passwd'",
        ),
        (
            "open('/usr/bin/env', 'rb')",
            "FileNotFoundError",
            "[Errno 44] No such file or directory: '/usr/bin/env'",
        ),
        (
            "import os\nos.listdir('/proc/self')",
            "FileNotFoundError",
            "[Errno 44] No such file or directory: '/proc/self'",
        ),
        (
            "import os\nos.system('touch /tmp/witbox-pwned')",
            "AttributeError",
            "module 'os' has no attribute 'system'",
        ),
        (
            "import os\nos.fork()",
            "AttributeError",
            "module 'os' has no attribute 'fork'",
        ),
        (
            "import socket",
            "ModuleNotFoundError",
            "module `socket` is not available in the witbox sandbox: it has no sockets",
        ),
        (
            "import _socket",
            "ModuleNotFoundError",
            "module `_socket` is not available in the witbox sandbox: it has no sockets",
        ),
        // The stdlib's own modules hold `socket` and `subprocess` (asyncio,
        // logging.handlers): what they reach fails with an error, not a crash.
        (
            "import logging.handlers
logging.handlers.socket.socket()",
            "OSError",
            "[Errno 58] the witbox sandbox has no sockets",
        ),
        (
            "import logging.handlers
logging.handlers.socket.create_connection(('127.0.0.1', 80))",
            "OSError",
            "[Errno 58] the witbox sandbox has no sockets",
        ),
        (
            "import asyncio.base_subprocess as b
b.subprocess.Popen(['ls'])",
            "OSError",
            "[Errno 58] wasi does not support processes.",
        ),
    ] {
        let o = cell(&mut s, code).await;
        assert_eq!(error_of(&o), (kind, message), "{code}");
    }
    let o = cell(&mut s, "import os\n(dict(os.environ), os.getcwd())").await;
    assert_eq!(o.value.as_deref(), Some("({}, '/')"));
    // The guest's `/` (and `/tmp`) is the session's own scratch folder: a write
    // there never reaches the host's `/tmp`.
    let o = cell(&mut s, "open('/tmp/witbox-x', 'w').write('x')").await;
    assert_eq!(o.value.as_deref(), Some("1"));
    assert!(!std::path::Path::new("/tmp/witbox-x").exists());
    assert_eq!(s.read_file("/tmp/witbox-x").unwrap(), b"x");
    // No class anywhere in the interpreter can start a process.
    let o = cell(
        &mut s,
        "seen, todo = set(), [object]\nwhile todo:\n    c = todo.pop()\n    for k in type.__subclasses__(c):\n        if k not in seen:\n            seen.add(k)\n            todo.append(k)\nsorted({k.__name__ for k in seen if k.__name__ in ('Popen', 'Process', 'Thread', 'socket', 'CDLL')})",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("['Popen', 'Process', 'Thread', 'socket']"),
        "{o:?}"
    );
    let o = cell(
        &mut s,
        "import logging\nt = logging.threading.Thread(target=print)\nt.start()",
    )
    .await;
    assert_eq!(
        error_of(&o),
        (
            "RuntimeError",
            "can't start a new thread: the witbox sandbox has no threads"
        )
    );
    let o = cell(
        &mut s,
        "import logging.handlers\nlogging.handlers.socket.socketpair()",
    )
    .await;
    assert_eq!(
        error_of(&o),
        ("OSError", "[Errno 58] the witbox sandbox has no sockets")
    );
    assert!(!std::path::Path::new("/tmp/witbox-pwned").exists());
}

#[tokio::test]
async fn granted_files_and_env_are_visible_and_nothing_else() {
    let dir = TempDir::new("py-files");
    dir.write("data.txt", "hello from the host");
    let policy = format!(
        "env = {{ GREETING = \"hi\" }}\ndirs = [{{ host = {:?}, guest = \"/data\" }}]",
        dir.path()
    );
    let mut s = session(&policy).await;
    let o = cell(
        &mut s,
        "import os\n(open('/data/data.txt').read(), dict(os.environ))",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("('hello from the host', {'GREETING': 'hi'})")
    );
    let o = cell(&mut s, "open('/data/new.txt', 'w')").await;
    assert_eq!(
        error_of(&o),
        (
            "PermissionError",
            "[Errno 63] Operation not permitted: '/data/new.txt'"
        )
    );
}

#[tokio::test]
async fn sessions_are_isolated_capped_and_expire() {
    let sessions = witbox::Sessions::new(runner(""), 2, Duration::from_millis(300));
    let a = sessions.create().await.unwrap();
    let b = sessions.create().await.unwrap();
    assert_ne!(a, b);
    sessions.run(&a, "secret = 'only in a'").await.unwrap();
    let o = sessions.run(&b, "secret").await.unwrap();
    assert_eq!(error_of(&o).0, "NameError");
    let o = sessions.run(&a, "secret").await.unwrap();
    assert_eq!(o.value.as_deref(), Some("'only in a'"));
    // Full.
    let e = sessions.create().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert_eq!(
        e.message,
        "too many sessions: 2 are open, the limit is 2 (`max-sessions`); close one, or wait 0 s for idle ones to expire"
    );
    // Closing frees a place; a closed session is gone.
    assert!(sessions.close(&b));
    assert!(!sessions.close(&b));
    let e = sessions.run(&b, "1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let c = sessions.create().await.unwrap();
    sessions.reset(&a).await.unwrap();
    let o = sessions.run(&a, "secret").await.unwrap();
    assert_eq!(error_of(&o).0, "NameError");
    // Idle sessions expire.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sessions.evict_idle(), 2);
    assert!(sessions.is_empty());
    assert_eq!(
        sessions.run(&c, "1").await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn sessions_from_the_warm_pool_are_fresh() {
    // `warm-sessions` (2 by default) keeps instances that ran an empty cell and
    // were reset; nothing of that shows.
    let runner = runner("call-tools = [\"quadratic_solve\"]");
    let mut first = runner.session().await.unwrap();
    cell(&mut first, "x = 1").await;
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut s = runner.session().await.unwrap();
        let o = cell(&mut s, "assert 'x' not in globals()\n1 / 0").await;
        let e = o.error.unwrap();
        assert_eq!(e.kind, "ZeroDivisionError");
        assert!(
            e.traceback.contains("File \"<cell 1>\", line 2"),
            "{}",
            e.traceback
        );
        let o = cell(&mut s, "quadratic_solve(1, 0, -1)").await;
        assert_eq!(
            o.value.as_deref(),
            Some("[{'re': -1.0, 'im': 0.0}, {'re': 1.0, 'im': 0.0}]")
        );
        // `reset` starts the numbering again too.
        s.reset().await.unwrap();
        let o = cell(&mut s, "1 / 0").await;
        assert!(o.error.unwrap().traceback.contains("<cell 1>"));
    }
}

#[tokio::test]
async fn the_output_limit_covers_everything_a_run_returns() {
    let mut s = session("max-output-bytes = 1000").await;
    let marker = "\n[witbox: output truncated: the run reached its limit of 1000 bytes]\n";
    let limit = "the run's output, value, final answer and error together passed its output limit of 1000 bytes (`max-output-bytes`), so they were cut";
    // A value, with what was printed before it.
    let o = cell(&mut s, "print('a' * 600)\n'v' * 5000").await;
    assert_eq!(error_of(&o), ("OutputLimit", limit));
    assert_eq!(o.stdout.len(), 601);
    let value = o.value.unwrap();
    assert!(value.ends_with(marker), "{value:?}");
    assert_eq!(value.len(), 399 + marker.len());
    // A final answer that does not fit is dropped, not cut into broken JSON.
    let o = cell(&mut s, "final_answer('f' * 5000)").await;
    assert_eq!(error_of(&o), ("OutputLimit", limit));
    assert_eq!(o.final_answer, None);
    // An exception's message and traceback count too; the exception stays the error.
    let o = cell(&mut s, "raise ValueError('m' * 5000)").await;
    let e = o.error.unwrap();
    assert_eq!(e.kind, "ValueError");
    assert!(e.message.ends_with(marker), "{:?}", e.message);
    assert!(e.message.len() + e.traceback.len() <= 1000 + 2 * marker.len());
    // A cell that turns off the runner's own budget is still cut by the host.
    let o = cell(
        &mut s,
        "import sys\nsys.stdout._budget.limit = 10**9\nprint('x' * 5000)",
    )
    .await;
    assert_eq!(error_of(&o), ("OutputLimit", limit));
    assert_eq!(o.stdout, format!("{}{marker}", "x".repeat(1000)));
    assert_eq!(cell(&mut s, "print('ok')").await.stdout, "ok\n");
}

#[tokio::test]
async fn call_tool_arguments_are_sized_before_they_are_parsed() {
    let mut s = session("call-tools = [\"quadratic_solve\"]").await;
    let o = cell(
        &mut s,
        "try:\n    quadratic_solve('9' * 9_000_000, 0, 0)\nexcept ToolError as e:\n    r = (e.kind, e.message)\nr",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some(
            "('invalid-arguments', 'the arguments of `quadratic_solve` are 9000025 bytes; the limit is 8388608')"
        ),
        "{o:?}"
    );
    assert_eq!(
        cell(&mut s, "quadratic_solve(1, 0, -1)[1]['re']")
            .await
            .value
            .as_deref(),
        Some("1.0")
    );
}
