//! Python errors never kill the interpreter when Python can report them: an
//! exception that cannot be described, a lone surrogate on its way out, and data
//! or source nested deeper than the stack each end the run with a named error,
//! and the session and its globals live on. Each case here used to trap the
//! instance (`Crash`, `session_restarted`).

use crate::support::*;
use witbox::{RunOutcome, Session};

/// Generous: the deep cases are CPU-bound (a nested `repr` walks ~30000 levels
/// and checks each against all the ones above it) and the tests share two cores.
const POLICY: &str = "timeout-ms = 120000";

/// A session with a global set, to show it survives.
async fn keeping() -> Session {
    let mut s = session(POLICY).await;
    let o = cell(&mut s, "keep = 'still here'").await;
    assert!(o.ok(), "{o:?}");
    s
}

/// Runs `code` and checks that the session and its globals lived through it.
async fn survives(s: &mut Session, code: &str) -> RunOutcome {
    let o = cell(s, code).await;
    assert!(!o.session_restarted, "{code}: {o:?}");
    assert_eq!(o.restart_reason, None, "{code}");
    let after = cell(s, "keep").await;
    assert_eq!(after.value.as_deref(), Some("'still here'"), "{code}");
    o
}

#[tokio::test]
async fn an_exception_that_cannot_be_described_is_reported_as_what_describing_raised() {
    let mut s = keeping().await;
    let o = survives(
        &mut s,
        "class E(Exception):\n    def __str__(self): raise ValueError('no')\nraise E()",
    )
    .await;
    assert_eq!(error_of(&o), ("ValueError", "no"));
    let e = o.error.unwrap();
    // The line of the `raise` in `__str__`; both exceptions in the traceback.
    assert_eq!(e.line, Some(2));
    assert!(
        e.traceback.starts_with(
            "Traceback (most recent call last):\n  File \"<cell 2>\", line 3, in <module>\n    raise E()\nE: <exception str() failed>\n\nDuring handling of the above exception, another exception occurred:\n\n"
        ),
        "{}",
        e.traceback
    );
    assert!(e.traceback.ends_with("ValueError: no\n"), "{}", e.traceback);

    let o = survives(
        &mut s,
        "class E(Exception):\n    def __str__(self): return str(self)\nraise E()",
    )
    .await;
    assert_eq!(
        error_of(&o),
        ("RecursionError", "maximum recursion depth exceeded")
    );
    let e = o.error.unwrap();
    assert_eq!(e.line, Some(2));
    assert!(
        e.traceback.contains("  [Previous line repeated "),
        "{}",
        e.traceback
    );

    // str() itself raises: the line is the `raise`.
    let o = survives(
        &mut s,
        "class E(Exception):\n    def __str__(self): return 42\nraise E()",
    )
    .await;
    assert_eq!(
        error_of(&o),
        ("TypeError", "__str__ returned non-string (type int)")
    );
    assert_eq!(o.error.unwrap().line, Some(3));

    // Describing an exception does not need its repr.
    let o = survives(
        &mut s,
        "class E(Exception):\n    def __repr__(self): raise ValueError('no')\nraise E()",
    )
    .await;
    assert_eq!(error_of(&o), ("E", ""));

    // A SyntaxError raised by hand, with a position the host cannot take (u32).
    let o = survives(
        &mut s,
        "raise SyntaxError('bad', ('<cell 9>', -1, 2**40, 'x'))",
    )
    .await;
    assert_eq!(error_of(&o), ("SyntaxError", "bad"));
    let e = o.error.unwrap();
    assert_eq!((e.line, e.column), (None, None));
}

#[tokio::test]
async fn a_trailing_value_whose_repr_fails_is_that_error() {
    let mut s = keeping().await;
    let o = survives(
        &mut s,
        "class R:\n    def __repr__(self): raise ValueError('no')\nR()",
    )
    .await;
    assert_eq!(error_of(&o), ("ValueError", "no"));
    assert_eq!((o.value, o.error.unwrap().line), (None, Some(2)));

    let o = survives(
        &mut s,
        "class R:\n    def __repr__(self): return repr(self)\nR()",
    )
    .await;
    assert_eq!(
        error_of(&o),
        ("RecursionError", "maximum recursion depth exceeded")
    );
    assert_eq!(o.value, None);
}

#[tokio::test]
async fn lone_surrogates_show_escaped_next_to_a_unicode_encode_error() {
    let mut s = keeping().await;
    let encode = |c: &str, at: u32| {
        format!(
            "'utf-8' codec can't encode character '\\{c}' in position {at}: surrogates not allowed"
        )
    };

    // The text written before, and the text that holds one (escaped), both show.
    let o = survives(&mut s, "print('a')\nprint('\\ud800')\nprint('never')").await;
    assert_eq!(
        error_of(&o),
        ("UnicodeEncodeError", encode("ud800", 0).as_str())
    );
    assert_eq!(o.stdout, "a\n\\ud800");
    assert_eq!(o.error.unwrap().line, Some(2));

    let o = survives(&mut s, "import sys\nprint('x\\udcff', file=sys.stderr)").await;
    assert_eq!(
        error_of(&o),
        ("UnicodeEncodeError", encode("udcff", 1).as_str())
    );
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", "x\\udcff"));

    // It is an ordinary exception: code can catch it and go on.
    let o = survives(
        &mut s,
        "try:\n    print('\\udcff')\nexcept UnicodeEncodeError as e:\n    reason = e.reason\nreason",
    )
    .await;
    assert_eq!(
        (o.value.as_deref(), o.error),
        (Some("'surrogates not allowed'"), None)
    );

    // An answer that cannot be JSON text is no answer: the call raises.
    let o = survives(&mut s, "final_answer(['ok', '\\ud800'])").await;
    assert_eq!(
        error_of(&o),
        ("UnicodeEncodeError", encode("ud800", 8).as_str())
    );
    assert_eq!((o.final_answer, o.error.unwrap().line), (None, Some(1)));

    // In an exception's message: that exception, its text escaped.
    let o = survives(&mut s, "raise ValueError('bad \\ud800')").await;
    assert_eq!(error_of(&o), ("ValueError", "bad \\ud800"));
    assert!(
        o.error
            .unwrap()
            .traceback
            .ends_with("ValueError: bad \\ud800\n")
    );

    // In the repr of the trailing expression: the value escaped, and the error.
    let o = survives(
        &mut s,
        "class R:\n    def __repr__(self): return '\\udcff!'\nR()",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("\\udcff!"));
    assert_eq!(
        error_of(&o),
        ("UnicodeEncodeError", encode("udcff", 0).as_str())
    );
}

/// The `RecursionError` CPython raises when its C stack is nearly full; the
/// kilobytes it names depend on the build, so only the ends are compared.
fn assert_stack_overflow(o: &RunOutcome, code: &str, while_: &str) {
    let (kind, message) = error_of(o);
    assert_eq!(kind, "RecursionError", "{code}: {o:?}");
    assert!(
        message.starts_with("Stack overflow (used ") && message.ends_with(&format!(" kB){while_}")),
        "{code}: {message}"
    );
}

#[tokio::test]
async fn deeply_nested_lists_are_a_recursion_error() {
    let mut s = keeping().await;
    let o = survives(&mut s, "l = []\nfor _ in range(10**6): l = [l]\nrepr(l)").await;
    assert_stack_overflow(&o, "repr(l)", " while getting the repr of an object");
    assert_eq!(o.error.unwrap().line, Some(3));
    // The trailing expression's repr is the runner's, so no user line.
    let o = survives(&mut s, "l").await;
    assert_stack_overflow(&o, "l", " while getting the repr of an object");
    assert_eq!((o.value, o.error.unwrap().line), (None, None));
    let o = survives(&mut s, "str(l)").await;
    assert_stack_overflow(&o, "str(l)", " while getting the repr of an object");
    let o = survives(&mut s, "import json\njson.dumps(l)").await;
    assert_stack_overflow(&o, "json.dumps(l)", " while encoding a JSON object");
    // json adds a note for every level it unwinds: shown once, with a count.
    let e = o.error.unwrap();
    assert!(
        e.traceback
            .contains("when serializing list item 0\n[Previous line repeated "),
        "{}",
        e.traceback
    );
    assert!(e.traceback.len() < 10_000, "{}", e.traceback.len());
}

#[tokio::test]
async fn other_deeply_nested_data_is_a_recursion_error() {
    let mut s = keeping().await;
    for (code, while_) in [
        (
            "d = {}\nfor _ in range(10**5): d = {'a': d}\nrepr(d)",
            " while getting the repr of an object",
        ),
        (
            "a, b = [], []\nfor _ in range(10**5): a, b = [a], [b]\na == b",
            " in comparison",
        ),
        (
            "import json\njson.loads('[' * 10**5 + ']' * 10**5)",
            " while decoding a JSON array from a unicode string",
        ),
        (
            "import pickle\np = []\nfor _ in range(10**5): p = [p]\npickle.dumps(p)",
            " while pickling an object",
        ),
        // Python code recursing through C, past a raised recursion limit.
        (
            "import sys\nsys.setrecursionlimit(10**6)\nclass R:\n    def __repr__(self): return repr(self)\nrepr(R())",
            "",
        ),
    ] {
        let o = survives(&mut s, code).await;
        assert_stack_overflow(&o, code, while_);
    }
}

#[tokio::test]
async fn deeply_nested_source_is_a_named_error() {
    let mut s = keeping().await;
    let too_complex = (
        "MemoryError",
        "Parser stack overflowed - Python source too complex to parse",
    );
    for code in [
        "eval('[' * 100000 + ']' * 100000)",
        "compile('1' + '+(1' * 50000 + ')' * 50000, 'x', 'eval')",
        "import ast\nast.literal_eval('[' * 100000 + ']' * 100000)",
    ] {
        let o = survives(&mut s, code).await;
        assert_eq!(error_of(&o), too_complex, "{code}");
    }
    // The cell's own source, nested as deep.
    let code = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let o = survives(&mut s, &code).await;
    assert_eq!(error_of(&o), too_complex);
    // Left-nested operators parse, then are too deep for the compiler.
    let code = "compile('1' + '+1' * 100000, 'x', 'eval')";
    let o = survives(&mut s, code).await;
    assert_stack_overflow(&o, code, " during compilation");
}

#[tokio::test]
async fn recursion_that_python_does_not_guard_is_a_crash_and_a_restart_from_the_checkpoint() {
    // CPython checks its depth against the shadow stack in linear memory; hashing
    // nested tuples recurses in C without a check and uses none of it, so only
    // the wasm stack stops it, and a trap kills the instance.
    let mut s = keeping().await;
    let o = cell(
        &mut s,
        "t = ()\nfor _ in range(2 * 10**6): t = (t,)\nhash(t)",
    )
    .await;
    let message = "the interpreter crashed: its call stack overflowed in C code that Python does not guard (such as `hash()` of deeply nested tuples, a long chain of nested iterators, or freeing data nested over 100000 levels deep)";
    assert_eq!(error_of(&o), ("Crash", message));
    assert!(o.session_restarted);
    assert_eq!(o.restart_reason, Some(witbox::python::RestartReason::Crash));
    // The fresh instance has the globals of the last completed cell back.
    assert!(o.globals_restored, "{o:?}");
    let o = cell(&mut s, "keep").await;
    assert_eq!(o.value.as_deref(), Some("'still here'"));
}
