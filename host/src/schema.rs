//! WIT types → JSON Schema, and the docs that become tool descriptions.
//!
//! The mapping (also in the README):
//!
//! | WIT | JSON | JSON Schema |
//! |---|---|---|
//! | `bool` | `true` | `boolean` |
//! | `u8` … `s64` | `42` | `integer` with the type's `minimum` / `maximum` |
//! | `f32`, `f64` | `1.5` (results: non-finite as `"NaN"`, `"Infinity"`, `"-Infinity"`) | `number` |
//! | `char` | `"x"` | `string`, exactly one character |
//! | `string` | `"text"` | `string` |
//! | `list<T>` | `[…]` | `array` of T |
//! | `tuple<A, B>` | `[a, b]` | `array` with `prefixItems`, fixed length |
//! | `record` | `{"field": …}` | `object`, `additionalProperties: false`, option fields not required |
//! | `option<T>` | the value or `null` (a missing field is `none`) | `anyOf: [T, null]` |
//! | `enum` | `"case"` | `string` with `enum` |
//! | `flags` | `["read", "write"]` | `array` of unique case names |
//! | `variant` | `"case"` without payload, `{"case": payload}` with one | `oneOf` |
//! | `result<T, E>` (inside a value) | `{"ok": T}` or `{"err": E}` | `oneOf` |
//! | `result<T, E>` (what a tool returns) | the tool's result is `T`; `E` is a `tool-error` with `E` as `detail` | — |
//!
//! Resources, futures, streams, maps, fixed-length lists and nested options are not
//! supported in tool signatures: loading such a component fails and names the function.

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use wit_parser::{Docs, Function, Resolve, Type, TypeDefKind};

/// A function's description, and its per-parameter docs.
///
/// WIT does not keep `///` comments on parameters inside a component, so parameters
/// are documented in the function's docs, one per line: ``- `name`: what it is``.
/// Those lines become the parameters' descriptions; the rest is the tool's description.
pub fn split_docs(func: &Function) -> (String, BTreeMap<String, String>) {
    let docs = func.docs.contents.as_deref().unwrap_or("");
    let mut params = BTreeMap::new();
    let mut description = Vec::new();
    for line in docs.lines() {
        let param = line.trim().strip_prefix("- ").and_then(|rest| {
            let (name, text) = rest.split_once(':')?;
            let name = name.trim().trim_matches('`');
            func.params
                .iter()
                .any(|p| p.name == name)
                .then(|| (name.to_string(), text.trim().to_string()))
        });
        match param {
            Some((name, text)) => {
                params.insert(name, text);
            }
            None => description.push(line),
        }
    }
    let description = description.join("\n").trim().to_string();
    (description, params)
}

/// The JSON Schema of a function's parameters, as one object.
pub fn params_schema(
    resolve: &Resolve,
    func: &Function,
    param_docs: &BTreeMap<String, String>,
) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for p in &func.params {
        let mut s = schema(resolve, &p.ty);
        if let Some(doc) = param_docs.get(&p.name) {
            s["description"] = json!(doc);
        }
        if !is_option(resolve, &p.ty) {
            required.push(json!(p.name));
        }
        properties.insert(p.name.clone(), s);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// Fails if `ty` cannot cross the JSON boundary; `what` names the place for the error.
pub fn check(resolve: &Resolve, ty: &Type, what: &str) -> Result<()> {
    let Type::Id(id) = ty else {
        if *ty == Type::ErrorContext {
            bail!("{what} is an `error-context`, which a tool cannot take or return");
        }
        return Ok(());
    };
    match &resolve.types[*id].kind {
        TypeDefKind::Record(r) => r
            .fields
            .iter()
            .try_for_each(|f| check(resolve, &f.ty, &format!("{what}.{}", f.name))),
        TypeDefKind::Tuple(t) => t
            .types
            .iter()
            .enumerate()
            .try_for_each(|(i, t)| check(resolve, t, &format!("{what}.{i}"))),
        TypeDefKind::Variant(v) => v
            .cases
            .iter()
            .filter_map(|c| c.ty.as_ref().map(|t| (c, t)))
            .try_for_each(|(c, t)| check(resolve, t, &format!("{what}.{}", c.name))),
        TypeDefKind::Option(t) => {
            if is_option(resolve, t) {
                bail!("{what} is a nested `option<option<…>>`, which JSON cannot tell apart");
            }
            check(resolve, t, what)
        }
        TypeDefKind::Result(r) => {
            r.ok.iter()
                .try_for_each(|t| check(resolve, t, &format!("{what}.ok")))?;
            r.err
                .iter()
                .try_for_each(|t| check(resolve, t, &format!("{what}.err")))
        }
        TypeDefKind::List(t) | TypeDefKind::Type(t) => check(resolve, t, what),
        TypeDefKind::Flags(_) | TypeDefKind::Enum(_) => Ok(()),
        TypeDefKind::Resource | TypeDefKind::Handle(_) => {
            bail!("{what} is a resource, which a tool cannot take or return")
        }
        TypeDefKind::Future(_) | TypeDefKind::Stream(_) => {
            bail!("{what} is a future or stream, which a tool cannot take or return")
        }
        TypeDefKind::Map(..) | TypeDefKind::FixedLengthList(..) => {
            bail!("{what} is a map or fixed-length list, which witbox does not support yet")
        }
        TypeDefKind::Unknown => bail!("{what} has an unknown type"),
    }
}

/// Whether `ty` is an `option<…>` (through aliases).
pub fn is_option(resolve: &Resolve, ty: &Type) -> bool {
    match ty {
        Type::Id(id) => match &resolve.types[*id].kind {
            TypeDefKind::Option(_) => true,
            TypeDefKind::Type(t) => is_option(resolve, t),
            _ => false,
        },
        _ => false,
    }
}

/// The JSON Schema of one WIT type.
pub fn schema(resolve: &Resolve, ty: &Type) -> Value {
    let int = |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
    match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::U8 => int(0, u8::MAX.into()),
        Type::U16 => int(0, u16::MAX.into()),
        Type::U32 => int(0, u32::MAX.into()),
        Type::U64 => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        Type::S8 => int(i8::MIN.into(), i8::MAX.into()),
        Type::S16 => int(i16::MIN.into(), i16::MAX.into()),
        Type::S32 => int(i32::MIN.into(), i32::MAX.into()),
        Type::S64 => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
        Type::F32 | Type::F64 => json!({"type": "number"}),
        Type::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
        Type::String => json!({"type": "string"}),
        Type::ErrorContext => json!({}),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            let mut s = match &def.kind {
                TypeDefKind::Record(r) => {
                    let mut properties = Map::new();
                    let mut required = Vec::new();
                    for f in &r.fields {
                        properties
                            .insert(f.name.clone(), with_docs(schema(resolve, &f.ty), &f.docs));
                        if !is_option(resolve, &f.ty) {
                            required.push(json!(f.name));
                        }
                    }
                    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
                }
                TypeDefKind::Tuple(t) => {
                    let items: Vec<Value> = t.types.iter().map(|t| schema(resolve, t)).collect();
                    json!({"type": "array", "prefixItems": items, "items": false, "minItems": items.len(), "maxItems": items.len()})
                }
                TypeDefKind::Flags(f) => {
                    let names: Vec<&str> = f.flags.iter().map(|f| f.name.as_str()).collect();
                    let mut s = json!({"type": "array", "items": {"type": "string", "enum": names}, "uniqueItems": true});
                    if let Some(d) = case_docs(f.flags.iter().map(|f| (&f.name, &f.docs))) {
                        s["items"]["description"] = json!(d);
                    }
                    s
                }
                TypeDefKind::Enum(e) => {
                    let names: Vec<&str> = e.cases.iter().map(|c| c.name.as_str()).collect();
                    let mut s = json!({"type": "string", "enum": names});
                    if let Some(d) = case_docs(e.cases.iter().map(|c| (&c.name, &c.docs))) {
                        s["description"] = json!(d);
                    }
                    s
                }
                TypeDefKind::Variant(v) => {
                    let cases: Vec<Value> = v
                        .cases
                        .iter()
                        .map(|c| {
                            let s = match &c.ty {
                                None => json!({"const": c.name}),
                                Some(t) => json!({
                                    "type": "object",
                                    "properties": {c.name.clone(): schema(resolve, t)},
                                    "required": [c.name],
                                    "additionalProperties": false,
                                }),
                            };
                            with_docs(s, &c.docs)
                        })
                        .collect();
                    json!({"oneOf": cases})
                }
                TypeDefKind::Option(t) => json!({"anyOf": [schema(resolve, t), {"type": "null"}]}),
                TypeDefKind::Result(r) => {
                    let side = |name: &str, t: &Option<Type>| {
                        let inner = t
                            .as_ref()
                            .map(|t| schema(resolve, t))
                            .unwrap_or(json!({"type": "null"}));
                        json!({"type": "object", "properties": {name: inner}, "required": [name], "additionalProperties": false})
                    };
                    json!({"oneOf": [side("ok", &r.ok), side("err", &r.err)]})
                }
                TypeDefKind::List(t) => json!({"type": "array", "items": schema(resolve, t)}),
                TypeDefKind::Type(t) => schema(resolve, t),
                _ => json!({}),
            };
            if let Some(d) = def
                .docs
                .contents
                .as_deref()
                .map(str::trim)
                .filter(|d| !d.is_empty())
            {
                let text = match s.get("description").and_then(Value::as_str) {
                    Some(cases) => format!("{d} {cases}"),
                    None => d.to_string(),
                };
                s["description"] = json!(text);
            }
            s
        }
    }
}

fn with_docs(mut s: Value, docs: &Docs) -> Value {
    if let Some(d) = docs
        .contents
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        s["description"] = json!(d);
    }
    s
}

/// "`red`: Red. `green`: Green." from documented cases, or `None` if none has docs.
fn case_docs<'a>(cases: impl Iterator<Item = (&'a String, &'a Docs)>) -> Option<String> {
    let parts: Vec<String> = cases
        .filter_map(|(name, docs)| Some(format!("`{name}`: {}", docs.contents.as_deref()?.trim())))
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// For a function returning `result<T, E>` with a documented variant or enum `E`:
/// "Errors: `case`: what it means. …", so the model knows what failure looks like.
pub fn error_docs(resolve: &Resolve, result: &Type) -> Option<String> {
    let Type::Id(id) = result else { return None };
    let err = match &resolve.types[*id].kind {
        TypeDefKind::Result(r) => r.err?,
        TypeDefKind::Type(t) => return error_docs(resolve, t),
        _ => return None,
    };
    let Type::Id(err) = err else { return None };
    let cases = match &resolve.types[err].kind {
        TypeDefKind::Variant(v) => case_docs(v.cases.iter().map(|c| (&c.name, &c.docs))),
        TypeDefKind::Enum(e) => case_docs(e.cases.iter().map(|c| (&c.name, &c.docs))),
        _ => None,
    }?;
    Some(format!("Errors: {cases}"))
}
