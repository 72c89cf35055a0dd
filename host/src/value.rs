//! JSON ⇄ component values, following the mapping documented in [`crate::schema`].
//!
//! Conversion is validation: every mismatch is rejected with the path of the
//! offending value, before the guest runs.

use serde_json::{Map, Value, json};
use wasmtime::component::Val;
use wit_parser::{Resolve, Type, TypeDefKind};

/// Converts the JSON arguments object of a call into parameter values.
pub fn args_from_json(
    resolve: &Resolve,
    params: &[(String, Type)],
    args: &Value,
) -> Result<Vec<Val>, String> {
    let empty = Map::new();
    let obj = match args {
        Value::Object(o) => o,
        Value::Null => &empty,
        other => {
            return Err(format!(
                "the arguments must be a JSON object, got {}",
                kind(other)
            ));
        }
    };
    if let Some(unknown) = obj.keys().find(|k| !params.iter().any(|(n, _)| n == *k)) {
        return Err(format!(
            "unknown argument `{unknown}` (expected {})",
            names(params.iter().map(|p| &p.0))
        ));
    }
    params
        .iter()
        .map(|(name, ty)| field(resolve, ty, obj.get(name), name, "argument"))
        .collect()
}

fn field(
    resolve: &Resolve,
    ty: &Type,
    v: Option<&Value>,
    path: &str,
    what: &str,
) -> Result<Val, String> {
    match v {
        Some(v) => from_json(resolve, ty, v, path),
        None if crate::schema::is_option(resolve, ty) => Ok(Val::Option(None)),
        None => Err(format!("missing required {what} `{path}`")),
    }
}

/// Converts one JSON value into a value of WIT type `ty`; `path` names it in errors.
pub fn from_json(resolve: &Resolve, ty: &Type, v: &Value, path: &str) -> Result<Val, String> {
    let mismatch = |expected: &str| format!("`{path}`: expected {expected}, got {}", kind(v));
    Ok(match ty {
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(|| mismatch("a boolean"))?),
        Type::U8 => Val::U8(int(v, path, "u8")?),
        Type::U16 => Val::U16(int(v, path, "u16")?),
        Type::U32 => Val::U32(int(v, path, "u32")?),
        Type::U64 => Val::U64(int(v, path, "u64")?),
        Type::S8 => Val::S8(int(v, path, "s8")?),
        Type::S16 => Val::S16(int(v, path, "s16")?),
        Type::S32 => Val::S32(int(v, path, "s32")?),
        Type::S64 => Val::S64(int(v, path, "s64")?),
        Type::F64 => Val::Float64(v.as_f64().ok_or_else(|| mismatch("a number"))?),
        Type::F32 => {
            let x = v.as_f64().ok_or_else(|| mismatch("a number"))?;
            if (x as f32).is_infinite() {
                return Err(format!("`{path}`: {v} is out of range for f32"));
            }
            Val::Float32(x as f32)
        }
        Type::Char => {
            let s = v
                .as_str()
                .ok_or_else(|| mismatch("a one-character string"))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(format!(
                        "`{path}`: expected exactly one character, got {s:?}"
                    ));
                }
            }
        }
        Type::String => Val::String(v.as_str().ok_or_else(|| mismatch("a string"))?.to_string()),
        Type::ErrorContext => {
            return Err(format!("`{path}`: error-context values are not supported"));
        }
        Type::Id(id) => match &resolve.types[*id].kind {
            TypeDefKind::Type(t) => return from_json(resolve, t, v, path),
            TypeDefKind::Record(r) => {
                let obj = v.as_object().ok_or_else(|| mismatch("an object"))?;
                if let Some(unknown) = obj.keys().find(|k| !r.fields.iter().any(|f| &f.name == *k))
                {
                    return Err(format!(
                        "`{path}`: unknown field `{unknown}` (expected {})",
                        names(r.fields.iter().map(|f| &f.name))
                    ));
                }
                let fields = r
                    .fields
                    .iter()
                    .map(|f| {
                        let p = format!("{path}.{}", f.name);
                        Ok((
                            f.name.clone(),
                            field(resolve, &f.ty, obj.get(&f.name), &p, "field")?,
                        ))
                    })
                    .collect::<Result<_, String>>()?;
                Val::Record(fields)
            }
            TypeDefKind::Tuple(t) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| mismatch(&format!("an array of {} items", t.types.len())))?;
                if arr.len() != t.types.len() {
                    return Err(format!(
                        "`{path}`: expected {} items, got {}",
                        t.types.len(),
                        arr.len()
                    ));
                }
                let items = t
                    .types
                    .iter()
                    .zip(arr)
                    .enumerate()
                    .map(|(i, (t, v))| from_json(resolve, t, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?;
                Val::Tuple(items)
            }
            TypeDefKind::List(t) => {
                let arr = v.as_array().ok_or_else(|| mismatch("an array"))?;
                let items = arr
                    .iter()
                    .enumerate()
                    .map(|(i, v)| from_json(resolve, t, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?;
                Val::List(items)
            }
            TypeDefKind::Option(t) => match v {
                Value::Null => Val::Option(None),
                v => Val::Option(Some(Box::new(from_json(resolve, t, v, path)?))),
            },
            TypeDefKind::Enum(e) => {
                let s = v.as_str().ok_or_else(|| mismatch("a string"))?;
                if !e.cases.iter().any(|c| c.name == s) {
                    return Err(format!(
                        "`{path}`: {s:?} is not one of {}",
                        names(e.cases.iter().map(|c| &c.name))
                    ));
                }
                Val::Enum(s.to_string())
            }
            TypeDefKind::Flags(f) => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| mismatch("an array of flag names"))?;
                let mut set = Vec::new();
                for item in arr {
                    let s = item.as_str().ok_or_else(|| {
                        format!("`{path}`: flags must be strings, got {}", kind(item))
                    })?;
                    if !f.flags.iter().any(|fl| fl.name == s) {
                        return Err(format!(
                            "`{path}`: {s:?} is not one of {}",
                            names(f.flags.iter().map(|f| &f.name))
                        ));
                    }
                    if set.iter().any(|x| x == s) {
                        return Err(format!("`{path}`: flag {s:?} is listed twice"));
                    }
                    set.push(s.to_string());
                }
                Val::Flags(set)
            }
            TypeDefKind::Variant(var) => {
                let all = || names(var.cases.iter().map(|c| &c.name));
                let (name, payload) = tagged(v).ok_or_else(|| {
                    format!("`{path}`: expected a case name or a one-key object {{\"case\": value}}, got {}", kind(v))
                })?;
                let case = var
                    .cases
                    .iter()
                    .find(|c| c.name == name)
                    .ok_or_else(|| format!("`{path}`: {name:?} is not one of {}", all()))?;
                let payload = match (&case.ty, payload) {
                    (None, None) => None,
                    (Some(t), Some(p)) => Some(Box::new(from_json(
                        resolve,
                        t,
                        p,
                        &format!("{path}.{name}"),
                    )?)),
                    (None, Some(_)) => {
                        return Err(format!(
                            "`{path}`: case `{name}` takes no value; write it as \"{name}\""
                        ));
                    }
                    (Some(_), None) => {
                        return Err(format!(
                            "`{path}`: case `{name}` needs a value: {{\"{name}\": …}}"
                        ));
                    }
                };
                Val::Variant(name.to_string(), payload)
            }
            TypeDefKind::Result(r) => {
                let (name, payload) = tagged(v)
                    .filter(|(n, p)| (*n == "ok" || *n == "err") && p.is_some())
                    .ok_or_else(|| mismatch("{\"ok\": …} or {\"err\": …}"))?;
                let payload = payload.unwrap();
                let side = if name == "ok" { &r.ok } else { &r.err };
                let inner = match side {
                    None if payload.is_null() => None,
                    None => {
                        return Err(format!(
                            "`{path}.{name}`: expected null, got {}",
                            kind(payload)
                        ));
                    }
                    Some(t) => Some(Box::new(from_json(
                        resolve,
                        t,
                        payload,
                        &format!("{path}.{name}"),
                    )?)),
                };
                Val::Result(if name == "ok" { Ok(inner) } else { Err(inner) })
            }
            _ => {
                return Err(format!(
                    "`{path}`: this type is not supported in tool arguments"
                ));
            }
        },
    })
}

/// `"case"` → (case, None); `{"case": v}` → (case, Some(v)).
fn tagged(v: &Value) -> Option<(&str, Option<&Value>)> {
    match v {
        Value::String(s) => Some((s, None)),
        Value::Object(o) if o.len() == 1 => o.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

fn int<T: TryFrom<i128>>(v: &Value, path: &str, name: &str) -> Result<T, String> {
    let (min, max): (i128, i128) = match name {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "s8" => (i8::MIN.into(), i8::MAX.into()),
        "s16" => (i16::MIN.into(), i16::MAX.into()),
        "s32" => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    };
    let expected = || {
        format!(
            "`{path}`: expected an integer ({name}, {min} to {max}), got {}",
            kind(v)
        )
    };
    let Value::Number(n) = v else {
        return Err(expected());
    };
    // JSON Schema's `integer` includes numbers like 3.0, so those are accepted too.
    let n = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e20)
                .map(|f| f as i128)
        })
        .ok_or_else(expected)?;
    T::try_from(n).map_err(|_| format!("`{path}`: {n} is out of range for {name} ({min} to {max})"))
}

/// Converts a result value to JSON.
pub fn to_json(v: &Val) -> Value {
    match v {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(x) => float(f64::from(*x)),
        Val::Float64(x) => float(*x),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Val::Variant(name, None) | Val::Enum(name) => json!(name),
        Val::Variant(name, Some(p)) => json!({ name.clone(): to_json(p) }),
        Val::Option(o) => o.as_deref().map(to_json).unwrap_or(Value::Null),
        Val::Result(Ok(o)) => json!({"ok": o.as_deref().map(to_json)}),
        Val::Result(Err(e)) => json!({"err": e.as_deref().map(to_json)}),
        Val::Flags(f) => json!(f),
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| json!([to_json(k), to_json(v)]))
                .collect(),
        ),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            json!("<unsupported value>")
        }
    }
}

/// The length of `v`'s JSON text (as [`to_json`] gives it, written compactly),
/// measured without building it: a result is sized before it is copied.
pub fn json_len(v: &Val) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, &AsJson(v));
    count.0
}

/// Serializes a component value exactly as [`to_json`] converts it.
struct AsJson<'a>(&'a Val);

impl serde::Serialize for AsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        let tagged = |s: S, tag: &str, payload: Option<&Val>| {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry(tag, &payload.map(AsJson))?;
            map.end()
        };
        match self.0 {
            Val::Bool(b) => s.serialize_bool(*b),
            Val::S8(n) => s.serialize_i8(*n),
            Val::U8(n) => s.serialize_u8(*n),
            Val::S16(n) => s.serialize_i16(*n),
            Val::U16(n) => s.serialize_u16(*n),
            Val::S32(n) => s.serialize_i32(*n),
            Val::U32(n) => s.serialize_u32(*n),
            Val::S64(n) => s.serialize_i64(*n),
            Val::U64(n) => s.serialize_u64(*n),
            Val::Float32(x) => float(f64::from(*x)).serialize(s),
            Val::Float64(x) => float(*x).serialize(s),
            Val::Char(c) => s.serialize_char(*c),
            Val::String(text) => s.serialize_str(text),
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&AsJson(item))?;
                }
                seq.end()
            }
            Val::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &AsJson(v))?;
                }
                map.end()
            }
            Val::Variant(name, None) | Val::Enum(name) => s.serialize_str(name),
            Val::Variant(name, Some(p)) => tagged(s, name, Some(p)),
            Val::Option(o) => match o.as_deref() {
                Some(v) => AsJson(v).serialize(s),
                None => s.serialize_unit(),
            },
            Val::Result(Ok(o)) => tagged(s, "ok", o.as_deref()),
            Val::Result(Err(e)) => tagged(s, "err", e.as_deref()),
            Val::Flags(f) => f.serialize(s),
            Val::Map(pairs) => {
                let mut seq = s.serialize_seq(Some(pairs.len()))?;
                for (k, v) in pairs {
                    seq.serialize_element(&(AsJson(k), AsJson(v)))?;
                }
                seq.end()
            }
            Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
                s.serialize_str("<unsupported value>")
            }
        }
    }
}

fn float(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(x)
    }
}

/// A JSON value's kind in words, for error messages: `the string "x"`, `an array`.
pub fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() > 40 => format!("a string of {} bytes", s.len()),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    it.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_json() {
        let v = Val::Record(vec![
            ("a \"q\"".into(), Val::String("é\n\u{1}".into())),
            (
                "n".into(),
                Val::List(vec![Val::U8(7), Val::Float64(2.0), Val::Float32(f32::NAN)]),
            ),
            ("o".into(), Val::Option(None)),
            (
                "r".into(),
                Val::Result(Err(Some(Box::new(Val::Variant("x".into(), None))))),
            ),
            (
                "t".into(),
                Val::Tuple(vec![Val::Char('ø'), Val::Flags(vec!["f".into()])]),
            ),
            ("m".into(), Val::Map(vec![(Val::S64(-1), Val::Bool(true))])),
        ]);
        assert_eq!(json_len(&v), to_json(&v).to_string().len());
    }
}
