//! From a component's WIT to its tools: names, descriptions from the `///` docs,
//! JSON Schemas of the parameters.
//!
//! Components keep their types but not their docs, so `cargo xtask build` embeds
//! each guest's WIT source in a `witbox-wit` custom section, which is read here.
//! That section is only words about the component: every function it describes
//! is checked against the component's real types, and a section that disagrees is
//! a load error (otherwise every call of the tool would fail).

use super::Tool;
use crate::schema;
use anyhow::{Context, Result, bail};
use wasmtime::component::types::{self as wt, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Function, FunctionKind, Resolve, Type, TypeDefKind, WorldId, WorldItem};

/// The custom section that carries a component's WIT source:
/// `{"world": "name", "files": {"world.wit": "…", "deps/agent/host.wit": "…"}}`.
pub const EMBEDDED_WIT_SECTION: &str = "witbox-wit";

/// The component's WIT, with its docs: from the `witbox-wit` section when there is
/// one, else from the component's own types (and the tools get generic descriptions).
pub(super) fn decode_wit(bytes: &[u8]) -> Result<(Resolve, WorldId)> {
    if let Some(section) = custom_section(bytes, EMBEDDED_WIT_SECTION) {
        return embedded_wit(section).context("invalid embedded WIT (`witbox-wit` section)");
    }
    match decode(bytes).context("failed to read the component's WIT types")? {
        DecodedWasm::Component(resolve, world) => Ok((resolve, world)),
        DecodedWasm::WitPackage(..) => bail!("it is a WIT package, not a component"),
    }
}

fn embedded_wit(section: &[u8]) -> Result<(Resolve, WorldId)> {
    #[derive(serde::Deserialize)]
    struct Embedded {
        world: String,
        files: std::collections::BTreeMap<String, String>,
    }
    let embedded: Embedded = serde_json::from_slice(section)?;
    let mut groups: std::collections::BTreeMap<String, wit_parser::SourceMap> = Default::default();
    for (path, text) in &embedded.files {
        let package = match path.strip_prefix("deps/") {
            Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
            None => String::new(),
        };
        groups
            .entry(package)
            .or_default()
            .push_str(path, text.as_str());
    }
    let parse = |map: wit_parser::SourceMap| map.parse().map_err(|(_, e)| anyhow::anyhow!("{e}"));
    let main = parse(groups.remove("").context("no top-level WIT file")?)?;
    let deps = groups
        .into_values()
        .map(parse)
        .collect::<Result<Vec<_>>>()?;
    let mut resolve = Resolve::default();
    let package = resolve.push_groups(main, deps)?;
    let world = resolve.select_world(&[package], Some(&embedded.world))?;
    Ok((resolve, world))
}

/// A top-level custom section of a component or module, by name.
pub fn custom_section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fn leb(bytes: &[u8], pos: &mut usize) -> Option<usize> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            value |= usize::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = leb(bytes, &mut pos)?;
        let end = pos.checked_add(size).filter(|&e| e <= bytes.len())?;
        if id == 0 {
            let mut p = pos;
            let len = leb(bytes, &mut p)?;
            if bytes.get(p..p.checked_add(len)?)? == name.as_bytes() {
                return Some(&bytes[p + len..end]);
            }
        }
        pos = end;
    }
    None
}

/// Interfaces that are not tools even when a component exports them.
fn is_tool_export(name: &str) -> bool {
    !(name.starts_with("wasi:") || name.starts_with("witbox:agent/"))
}

/// One tool per exported function of the world, checked against the component's
/// real types.
pub(super) fn derive_tools(
    component_name: &str,
    component: &Component,
    resolve: &Resolve,
    world_id: WorldId,
    index: usize,
) -> Result<Vec<Tool>> {
    let world = &resolve.worlds[world_id];
    let prefix = component_name.replace('-', "_");
    let mut tools = Vec::new();
    for (key, item) in &world.exports {
        let export_name = resolve.name_world_key(key);
        let interface = matches!(item, WorldItem::Interface { .. }).then(|| export_name.clone());
        let funcs: Vec<(&Function, ComponentExportIndex)> = match item {
            WorldItem::Function(f) => {
                let idx = component
                    .get_export_index(None, &export_name)
                    .context("missing function export")?;
                vec![(f, idx)]
            }
            WorldItem::Interface { id, .. } if is_tool_export(&export_name) => {
                let inst = component
                    .get_export_index(None, &export_name)
                    .with_context(|| format!("missing export `{export_name}`"))?;
                // Resource constructors and methods are not tools; a free function
                // that takes or returns a resource is rejected below.
                resolve.interfaces[*id]
                    .functions
                    .values()
                    .filter(|f| matches!(f.kind, FunctionKind::Freestanding))
                    .map(|f| {
                        let idx = component
                            .get_export_index(Some(&inst), &f.name)
                            .with_context(|| {
                                format!("missing export `{export_name}#{}`", f.name)
                            })?;
                        Ok((f, idx))
                    })
                    .collect::<Result<_>>()?
            }
            _ => continue,
        };
        for (func, export) in funcs {
            let what = format!("function `{}` of `{export_name}`", func.name);
            for p in &func.params {
                schema::check(resolve, &p.ty, &format!("parameter `{}` of {what}", p.name))?;
            }
            if let Some(r) = &func.result {
                schema::check(resolve, r, &format!("the result of {what}"))?;
            }
            check_against_component(resolve, func, component, interface.as_deref(), &what)?;
            let name = format!("{prefix}_{}", func.name.replace('-', "_"));
            if name.len() > 64 {
                bail!(
                    "the tool name `{name}` is longer than 64 characters; use a shorter component name"
                );
            }
            let (description, param_docs) = schema::split_docs(func);
            let mut description = if description.is_empty() {
                format!("Calls `{}` of the `{component_name}` component.", func.name)
            } else {
                description
            };
            if let Some(errors) = func
                .result
                .as_ref()
                .and_then(|r| schema::error_docs(resolve, r))
            {
                description = format!("{description}\n\n{errors}");
            }
            let returns_result = func.result.as_ref().is_some_and(|t| is_result(resolve, t));
            tools.push(Tool {
                parameters: schema::params_schema(resolve, func, &param_docs),
                name,
                description,
                component: component_name.to_string(),
                function: func.name.clone(),
                interface: interface.clone(),
                params: func.params.iter().map(|p| (p.name.clone(), p.ty)).collect(),
                returns_result,
                export,
                index,
            });
        }
    }
    Ok(tools)
}

/// Checks that the WIT describes the function the component really exports.
fn check_against_component(
    resolve: &Resolve,
    func: &Function,
    component: &Component,
    interface: Option<&str>,
    what: &str,
) -> Result<()> {
    let engine = component.engine();
    let exports = component.component_type();
    let item = match interface {
        None => exports.get_export(engine, &func.name).map(|e| e.ty),
        Some(name) => match exports.get_export(engine, name).map(|e| e.ty) {
            Some(ComponentItem::ComponentInstance(inst)) => {
                inst.get_export(engine, &func.name).map(|e| e.ty)
            }
            _ => None,
        },
    };
    let Some(ComponentItem::ComponentFunc(real)) = item else {
        bail!(
            "the embedded WIT (`witbox-wit` section) describes {what}, which the component does not export as a function"
        );
    };
    let mismatch = |part: String, wit: String, real: String| {
        anyhow::anyhow!(
            "the embedded WIT (`witbox-wit` section) does not match the component: {part} of {what} is `{wit}` in the WIT but `{real}` in the component"
        )
    };
    let real_params: Vec<(&str, wt::Type)> = real.params().collect();
    if real_params.len() != func.params.len() {
        return Err(mismatch(
            "the parameter list".into(),
            format!("{} parameters", func.params.len()),
            format!("{} parameters", real_params.len()),
        ));
    }
    for (p, (real_name, real_ty)) in func.params.iter().zip(&real_params) {
        if p.name != *real_name || !same_type(resolve, &p.ty, real_ty) {
            return Err(mismatch(
                format!("parameter `{}`", p.name),
                format!("{}: {}", p.name, describe_wit(resolve, &p.ty)),
                format!("{real_name}: {}", describe_real(real_ty)),
            ));
        }
    }
    let real_result: Vec<wt::Type> = real.results().collect();
    let same_result = match (&func.result, real_result.as_slice()) {
        (None, []) => true,
        (Some(wit), [real]) => same_type(resolve, wit, real),
        _ => false,
    };
    if !same_result {
        return Err(mismatch(
            "the result".into(),
            func.result
                .as_ref()
                .map(|t| describe_wit(resolve, t))
                .unwrap_or_else(|| "nothing".into()),
            real_result
                .first()
                .map(|t| describe_real(t).to_string())
                .unwrap_or_else(|| "nothing".into()),
        ));
    }
    Ok(())
}

/// Whether a WIT type (from the section) is the component's real type.
fn same_type(resolve: &Resolve, wit: &Type, real: &wt::Type) -> bool {
    let same = |a: &Type, b: &wt::Type| same_type(resolve, a, b);
    let same_opt = |a: &Option<Type>, b: Option<wt::Type>| match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same(a, &b),
        _ => false,
    };
    match (wit, real) {
        (Type::Bool, wt::Type::Bool)
        | (Type::U8, wt::Type::U8)
        | (Type::U16, wt::Type::U16)
        | (Type::U32, wt::Type::U32)
        | (Type::U64, wt::Type::U64)
        | (Type::S8, wt::Type::S8)
        | (Type::S16, wt::Type::S16)
        | (Type::S32, wt::Type::S32)
        | (Type::S64, wt::Type::S64)
        | (Type::F32, wt::Type::Float32)
        | (Type::F64, wt::Type::Float64)
        | (Type::Char, wt::Type::Char)
        | (Type::String, wt::Type::String)
        | (Type::ErrorContext, wt::Type::ErrorContext) => true,
        (Type::Id(id), real) => match (&resolve.types[*id].kind, real) {
            (TypeDefKind::Type(t), real) => same(t, real),
            (TypeDefKind::List(t), wt::Type::List(l)) => same(t, &l.ty()),
            (TypeDefKind::Option(t), wt::Type::Option(o)) => same(t, &o.ty()),
            (TypeDefKind::Result(r), wt::Type::Result(real)) => {
                same_opt(&r.ok, real.ok()) && same_opt(&r.err, real.err())
            }
            (TypeDefKind::Tuple(t), wt::Type::Tuple(real)) => {
                t.types.len() == real.types().len()
                    && t.types.iter().zip(real.types()).all(|(a, b)| same(a, &b))
            }
            (TypeDefKind::Record(r), wt::Type::Record(real)) => {
                r.fields.len() == real.fields().len()
                    && r.fields
                        .iter()
                        .zip(real.fields())
                        .all(|(a, b)| a.name == b.name && same(&a.ty, &b.ty))
            }
            (TypeDefKind::Variant(v), wt::Type::Variant(real)) => {
                v.cases.len() == real.cases().len()
                    && v.cases
                        .iter()
                        .zip(real.cases())
                        .all(|(a, b)| a.name == b.name && same_opt(&a.ty, b.ty))
            }
            (TypeDefKind::Enum(e), wt::Type::Enum(real)) => {
                e.cases.iter().map(|c| c.name.as_str()).eq(real.names())
            }
            (TypeDefKind::Flags(f), wt::Type::Flags(real)) => {
                f.flags.iter().map(|c| c.name.as_str()).eq(real.names())
            }
            (TypeDefKind::Map(k, v), wt::Type::Map(real)) => {
                same(k, &real.key()) && same(v, &real.value())
            }
            (TypeDefKind::FixedLengthList(t, n), wt::Type::FixedLengthList(real)) => {
                *n == real.len() && same(t, &real.ty())
            }
            // Resources and async types are refused by `schema::check` before this.
            _ => false,
        },
        _ => false,
    }
}

/// A WIT type in words, for the mismatch message.
fn describe_wit(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => match &resolve.types[*id].kind {
            TypeDefKind::Type(t) => describe_wit(resolve, t),
            kind => kind.as_str().to_string(),
        },
    }
}

/// A component's real type in words, for the mismatch message.
fn describe_real(ty: &wt::Type) -> &'static str {
    match ty {
        wt::Type::Bool => "bool",
        wt::Type::S8 => "s8",
        wt::Type::U8 => "u8",
        wt::Type::S16 => "s16",
        wt::Type::U16 => "u16",
        wt::Type::S32 => "s32",
        wt::Type::U32 => "u32",
        wt::Type::S64 => "s64",
        wt::Type::U64 => "u64",
        wt::Type::Float32 => "f32",
        wt::Type::Float64 => "f64",
        wt::Type::Char => "char",
        wt::Type::String => "string",
        wt::Type::List(_) => "list",
        wt::Type::Map(_) => "map",
        wt::Type::Record(_) => "record",
        wt::Type::Tuple(_) => "tuple",
        wt::Type::Variant(_) => "variant",
        wt::Type::Enum(_) => "enum",
        wt::Type::Option(_) => "option",
        wt::Type::Result(_) => "result",
        wt::Type::Flags(_) => "flags",
        wt::Type::Own(_) => "own",
        wt::Type::Borrow(_) => "borrow",
        wt::Type::Future(_) => "future",
        wt::Type::Stream(_) => "stream",
        wt::Type::ErrorContext => "error-context",
        wt::Type::FixedLengthList(_) => "fixed-length list",
    }
}

fn is_result(resolve: &Resolve, ty: &Type) -> bool {
    match ty {
        Type::Id(id) => match &resolve.types[*id].kind {
            TypeDefKind::Result(_) => true,
            TypeDefKind::Type(t) => is_result(resolve, t),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_reader_finds_a_section_and_survives_garbage() {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend(crate::embed::custom_section("other", b"x"));
        bytes.extend(crate::embed::custom_section(EMBEDDED_WIT_SECTION, b"{}"));
        assert_eq!(
            custom_section(&bytes, EMBEDDED_WIT_SECTION),
            Some(&b"{}"[..])
        );
        assert_eq!(custom_section(&bytes, "missing"), None);
        // A size past the end, a truncated LEB, an empty file: no section, no panic.
        assert_eq!(
            custom_section(b"\0asm\x0d\0\x01\0\0\xff\xff\xff\xff\x0f", "x"),
            None
        );
        assert_eq!(custom_section(b"\0asm\x0d\0\x01\0\0\x80", "x"), None);
        assert_eq!(custom_section(b"", "x"), None);
    }
}
