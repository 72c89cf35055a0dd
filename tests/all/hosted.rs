//! Host functions as tools (`witbox::HostTools`): the embedding program's own
//! functions, callable from one session's Python as functions of their names,
//! under the session's `max-tool-calls`; other sessions cannot reach them.

use crate::support::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use witbox::{ErrorKind, HostTool, HostTools, ToolError};

fn tool(
    name: &str,
    f: impl Fn(Value) -> Result<Value, ToolError> + Send + Sync + 'static,
) -> HostTool {
    let f = Arc::new(f);
    HostTool {
        name: name.into(),
        description: format!("The host's `{name}`."),
        parameters: json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}),
        call: Arc::new(move |args| {
            let f = f.clone();
            Box::pin(async move { f(args) })
        }),
    }
}

#[tokio::test]
async fn a_host_function_is_callable_from_its_session_only() {
    let runner = runner("max-tool-calls = 3");
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let double = tool("double", move |args| {
        counted.fetch_add(1, Ordering::Relaxed);
        Ok(json!(args["x"].as_i64().unwrap() * 2))
    });
    let fails = tool("fails", |_| {
        let mut e = ToolError::new(ErrorKind::ToolError, "no");
        e.detail = Some(json!({"type": "KeyError", "message": "k"}));
        Err(e)
    });
    let host = HostTools::new(runner.registry().clone(), vec![double, fails]).unwrap();
    let mut s = runner.session().await.unwrap();
    s.set_host_tools(host).await.unwrap();
    assert!(s.tools().contains(&"double".to_string()));

    let o = cell(&mut s, "double(21)").await;
    assert_eq!(o.value.as_deref(), Some("42"), "{o:?}");
    assert_eq!((o.tool_calls, calls.load(Ordering::Relaxed)), (1, 1));
    // A failure of the function is a ToolError in the sandbox, with its detail.
    let o = cell(
        &mut s,
        "try:\n    fails(1)\nexcept ToolError as e:\n    print(e)",
    )
    .await;
    assert_eq!(
        o.stdout,
        "`fails` returned an error: {\"type\":\"KeyError\",\"message\":\"k\"}\n"
    );
    // They count against `max-tool-calls`.
    let o = cell(&mut s, "for i in range(4): double(i)").await;
    assert_eq!(
        error_of(&o),
        (
            "ToolCallLimit",
            "the run reached its limit of 3 tool calls (`max-tool-calls`)"
        )
    );
    // Another session of the same runner has no such function.
    let mut other = runner.session().await.unwrap();
    let o = cell(&mut other, "double(1)").await;
    assert_eq!(error_of(&o), ("NameError", "name 'double' is not defined"));
}

#[test]
fn host_function_names_are_checked() {
    let registry = runner("").registry().clone();
    let bad = HostTools::new(registry.clone(), vec![tool("not a name", |_| Ok(json!(1)))]);
    assert_eq!(
        bad.err().unwrap().message,
        "a host tool's name must be a Python identifier (ASCII letters, digits and `_`), not \"not a name\""
    );
    let clash = HostTools::new(
        registry.clone(),
        vec![tool("quadratic_solve", |_| Ok(json!(1)))],
    );
    assert_eq!(
        clash.err().unwrap().message,
        "`quadratic_solve` is already a tool of the manifest"
    );
    let twice = HostTools::new(
        registry,
        vec![tool("f", |_| Ok(json!(1))), tool("f", |_| Ok(json!(2)))],
    );
    assert_eq!(twice.err().unwrap().message, "two host tools are named `f`");
}
