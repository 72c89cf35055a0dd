//! JSON arguments against arbitrary WIT types: a WIT interface is generated from
//! the input, then arbitrary JSON is converted to a component value of its
//! parameter type (and back, when that works). Errors are fine; panics are not.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use wit_parser::Resolve;

const PRIMITIVES: [&str; 13] = [
    "bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "f32", "f64", "char", "string",
];
const NAMED: [&str; 4] = ["r", "v", "e", "f"];

/// A WIT type expression; `named` allows the interface's own types.
fn ty(u: &mut Unstructured, depth: u32, named: bool) -> Result<String> {
    let choices = if depth >= 3 { 1 } else { 6 };
    Ok(match u.int_in_range(0..=choices)? {
        0 | 1 if named && u.ratio(1, 3)? => u.choose(&NAMED)?.to_string(),
        0 | 1 => u.choose(&PRIMITIVES)?.to_string(),
        2 => format!("list<{}>", ty(u, depth + 1, named)?),
        3 => format!("option<{}>", ty(u, depth + 1, named)?),
        4 => format!(
            "result<{}, {}>",
            ty(u, depth + 1, named)?,
            ty(u, depth + 1, named)?
        ),
        5 => format!(
            "tuple<{}, {}>",
            ty(u, depth + 1, named)?,
            ty(u, depth + 1, named)?
        ),
        _ => "result".to_string(),
    })
}

fn json(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let top = if depth >= 4 { 4 } else { 6 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        3 => Value::from(u.arbitrary::<i64>()?),
        4 => Value::String(u.arbitrary()?),
        5 => Value::Array(
            (0..u.int_in_range(0..=4)?)
                .map(|_| json(u, depth + 1))
                .collect::<Result<_>>()?,
        ),
        _ => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=4)? {
                let key = if u.ratio(1, 2)? {
                    u.choose(&["a", "b", "ok", "err", "x", "y", "red", "big"])?
                        .to_string()
                } else {
                    u.arbitrary()?
                };
                map.insert(key, json(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let text = format!(
        "package fuzz:t;\ninterface i {{\n  record r {{ a: {}, b: {} }}\n  variant v {{ x, y({}) }}\n  enum e {{ red, green }}\n  flags f {{ big, small }}\n  go: func(x: {});\n}}\n",
        ty(&mut u, 1, false)?,
        ty(&mut u, 1, false)?,
        ty(&mut u, 1, false)?,
        ty(&mut u, 0, true)?,
    );
    let mut resolve = Resolve::default();
    let Ok(package) = resolve.push_str("fuzz.wit", &text) else {
        return Ok(());
    };
    let interface = resolve.packages[package].interfaces["i"];
    let func = &resolve.interfaces[interface].functions["go"];
    let param = func.params[0].ty;
    let value = json(&mut u, 0)?;
    if let Ok(val) = witbox::value::from_json(&resolve, &param, &value, "x") {
        let _ = witbox::value::to_json(&val);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
