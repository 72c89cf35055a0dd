//! Loads the components of a manifest, derives one tool per exported function,
//! and invokes tools with JSON arguments.

use crate::bindings::host as wit;
use crate::engine::{Engine, EngineOptions};
use crate::error::{ErrorKind, ToolError};
use crate::manifest::Manifest;
use crate::sandbox::{Sandbox, State, tail};
use crate::{schema, value};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::Trap;
use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, InstancePre, Linker, Val, types,
};
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{Function, FunctionKind, Resolve, Type, WorldId, WorldItem};

/// A tool: one exported function of one component.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// `<component>_<function>` in snake_case.
    pub name: String,
    /// From the function's WIT docs.
    pub description: String,
    /// The JSON Schema of the arguments object.
    pub parameters: Value,
    /// The component that exports it.
    #[serde(skip)]
    pub component: String,
    /// The WIT function name.
    #[serde(skip)]
    pub function: String,
    /// The exported interface it belongs to (`witbox:quadratic/solver@0.1.0`), if any.
    #[serde(skip)]
    pub interface: Option<String>,
    #[serde(skip)]
    params: Vec<(String, Type)>,
    #[serde(skip)]
    returns_result: bool,
    #[serde(skip)]
    export: ComponentExportIndex,
    #[serde(skip)]
    index: usize,
}

/// A loaded, pre-linked component.
pub struct Loaded {
    /// Its name in the manifest.
    pub name: String,
    /// The `.wasm` file it came from.
    pub path: PathBuf,
    pre: InstancePre<State>,
    sandbox: Arc<Sandbox>,
    resolve: Arc<Resolve>,
    /// The instances (interfaces) it exports, by name.
    exports: Vec<String>,
}

/// A compiled component waiting for the components it imports from.
struct Pending {
    name: String,
    path: PathBuf,
    sandbox: Sandbox,
    bytes: Vec<u8>,
    component: Component,
    /// Interfaces it imports that another component must export.
    imports: Vec<String>,
    /// The instances (interfaces) it exports, by name.
    exports: Vec<String>,
    links: Vec<String>,
}

/// Every loaded component and the tools they give.
pub struct Registry {
    engine: Engine,
    linker: Linker<State>,
    components: Vec<Loaded>,
    tools: Vec<Tool>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    /// Loads every component of a manifest. Fuel is compiled in if any policy sets it.
    pub fn load(manifest: &Manifest, mut options: EngineOptions) -> Result<Arc<Self>> {
        options.fuel |=
            manifest.runner.policy.fuel > 0 || manifest.component.iter().any(|c| c.policy.fuel > 0);
        let engine = Engine::new(options)?;
        let linker = new_linker(&engine)?;
        let mut registry = Registry {
            engine,
            linker,
            components: Vec::new(),
            tools: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut pending = Vec::new();
        for entry in &manifest.component {
            let path = manifest.resolve(&entry.path);
            let sandbox = Sandbox::new(&entry.name, &entry.policy, &entry.config, manifest)
                .with_context(|| format!("invalid policy for `{}`", entry.name))?;
            pending.push(registry.compile(&entry.name, &path, sandbox, &entry.policy.link)?);
        }
        // A component is added after every component it imports from.
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .position(|p| p.imports.iter().all(|i| registry.exporter(i).is_some()));
            let Some(ready) = ready else {
                let p = &pending[0];
                let missing = p
                    .imports
                    .iter()
                    .find(|i| registry.exporter(i).is_none())
                    .expect("a missing import");
                let waiting = pending
                    .iter()
                    .any(|q| q.exports.iter().any(|e| compatible(missing, e)));
                if waiting {
                    bail!(
                        "`{}` imports `{missing}` from a component that imports back from it: the links form a cycle",
                        p.name
                    );
                }
                bail!(
                    "`{}` imports `{missing}`, which no loaded component exports; add the component that exports it to the manifest, and to `link` in `{}`'s policy",
                    p.name,
                    p.name
                );
            };
            let p = pending.remove(ready);
            registry.add(p)?;
        }
        Ok(Arc::new(registry))
    }

    /// Loads one component file with an empty policy, to see whether it works and what tools it gives.
    pub fn check_file(path: &Path, options: EngineOptions) -> Result<Arc<Self>> {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("tool");
        let name: String = stem
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let manifest = Manifest::parse(
            &format!(
                "[[component]]\nname = {:?}\npath = {:?}\n",
                name,
                path.to_string_lossy()
            ),
            Path::new(""),
        )?;
        Self::load(&manifest, options)
    }

    fn compile(
        &self,
        name: &str,
        path: &Path,
        sandbox: Sandbox,
        links: &[String],
    ) -> Result<Pending> {
        let bytes = std::fs::read(path).with_context(|| {
            format!("failed to read component `{name}` from `{}` (run `cargo xtask build` to build the guests)", path.display())
        })?;
        let component = self.engine.compile(name, &bytes).with_context(|| {
            format!(
                "failed to load component `{name}` from `{}`",
                path.display()
            )
        })?;
        let imports = component
            .component_type()
            .imports(self.engine.inner())
            .filter(|(import, item)| {
                matches!(item.ty, types::ComponentItem::ComponentInstance(_))
                    && !import.starts_with("wasi:")
                    && !import.starts_with("witbox:agent/")
            })
            .map(|(import, _)| import.to_string())
            .collect();
        let exports = component
            .component_type()
            .exports(self.engine.inner())
            .filter(|(_, item)| matches!(item.ty, types::ComponentItem::ComponentInstance(_)))
            .map(|(name, _)| name.to_string())
            .collect();
        Ok(Pending {
            name: name.to_string(),
            path: path.to_path_buf(),
            sandbox,
            bytes,
            component,
            imports,
            exports,
            links: links.to_vec(),
        })
    }

    /// The loaded component exporting an interface compatible with `import`.
    fn exporter(&self, import: &str) -> Option<(usize, &str)> {
        self.components.iter().enumerate().find_map(|(i, c)| {
            c.exports
                .iter()
                .find(|e| compatible(import, e))
                .map(|e| (i, e.as_str()))
        })
    }

    /// The linker for a component: the host's, plus its imports from other
    /// components, each call running in the exporter's own sandbox.
    fn linker_for(&self, p: &Pending) -> Result<Cow<'_, Linker<State>>> {
        let mut linker = crate::wasi::without_sockets(&self.linker, &p.component, &p.name)?;
        for import in &p.imports {
            let (index, export) = self.exporter(import).expect("ordered by imports");
            let exporter = &self.components[index].name;
            if !p.links.contains(exporter) {
                bail!(
                    "`{}` imports `{import}`, which `{exporter}` exports, but its policy does not allow it: add `link = [\"{exporter}\"]` to `{}`'s policy",
                    p.name,
                    p.name
                );
            }
            let mut instance = linker
                .to_mut()
                .instance(import)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("failed to link `{import}` into `{}`", p.name))?;
            for tool in self
                .tools
                .iter()
                .filter(|t| t.index == index && t.interface.as_deref() == Some(export))
            {
                let target = tool.name.clone();
                let importer = p.name.clone();
                instance
                    .func_new_async(&tool.function, move |mut store, _ty, params, results| {
                        let target = target.clone();
                        let importer = importer.clone();
                        Box::new(async move {
                            store.data_mut().turn.waits_on_host();
                            let state = store.data();
                            let (registry, depth) = (state.registry.clone(), state.depth + 1);
                            let registry = registry.ok_or_else(|| {
                                wasmtime::format_err!(
                                    "`{importer}` has no registry to call `{target}` in"
                                )
                            })?;
                            let tool = registry
                                .find(&target)
                                .map_err(|e| wasmtime::format_err!("{e}"))?;
                            let (values, _) = registry
                                .invoke_vals(&importer, tool, params.to_vec(), depth)
                                .await
                                .map_err(|e| {
                                    wasmtime::format_err!(
                                        "the linked call `{importer}` → `{target}` failed: {e}"
                                    )
                                })?;
                            results.clone_from_slice(&values);
                            Ok(())
                        })
                    })
                    .map_err(anyhow::Error::from)
                    .with_context(|| format!("failed to link `{import}` into `{}`", p.name))?;
            }
        }
        Ok(linker)
    }

    fn add(&mut self, p: Pending) -> Result<()> {
        let linked = self.linker_for(&p)?;
        let Pending {
            name,
            path,
            sandbox,
            bytes,
            component,
            exports,
            ..
        } = p;
        let name = name.as_str();
        let path = path.as_path();
        let fail = || {
            format!(
                "failed to load component `{name}` from `{}`",
                path.display()
            )
        };
        let pre = linked
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("failed to link `{name}`: it imports something witbox does not provide")
            })?;
        let (resolve, world) = decode_wit(&bytes).with_context(fail)?;
        let index = self.components.len();
        let tools = derive_tools(name, &component, &resolve, world, index).with_context(fail)?;
        let resolve = Arc::new(resolve);
        if tools.is_empty() {
            bail!("component `{name}` exports no functions, so it gives no tools");
        }
        for tool in tools {
            if let Some(&other) = self.by_name.get(&tool.name) {
                bail!(
                    "tool name collision: `{}` comes from both `{}` and `{name}`; rename one component in the manifest",
                    tool.name,
                    self.tools[other].component
                );
            }
            self.by_name.insert(tool.name.clone(), self.tools.len());
            self.tools.push(tool);
        }
        self.components.push(Loaded {
            name: name.to_string(),
            path: path.to_path_buf(),
            pre,
            sandbox: Arc::new(sandbox),
            resolve,
            exports,
        });
        Ok(())
    }

    /// The engine every component of this registry runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Every tool of the registry matching one of the patterns (all if none); a
    /// pattern that matches nothing is an error naming the tools there are.
    pub fn select(&self, patterns: &[String]) -> Result<Vec<String>> {
        let all: Vec<&str> = self.tools().iter().map(|t| t.name.as_str()).collect();
        if patterns.is_empty() {
            return Ok(all.iter().map(|s| s.to_string()).collect());
        }
        let mut out = Vec::new();
        for pattern in patterns {
            let p = glob::Pattern::new(pattern)
                .with_context(|| format!("invalid tool pattern `{pattern}`"))?;
            let hits: Vec<&&str> = all.iter().filter(|n| p.matches(n)).collect();
            if hits.is_empty() {
                bail!(
                    "`--tool {pattern}` matches no tool (loaded: {})",
                    if all.is_empty() {
                        "none".to_string()
                    } else {
                        all.join(", ")
                    }
                );
            }
            for name in hits {
                if !out.iter().any(|n: &String| n == *name) {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Every tool, in manifest order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// A tool by name.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The loaded components.
    pub fn components(&self) -> &[Loaded] {
        &self.components
    }

    /// Calls a tool with a JSON arguments object and returns its JSON result.
    pub async fn call(self: &Arc<Self>, name: &str, args: &Value) -> Result<Value, ToolError> {
        self.call_at_depth("host", name, args, 0).await
    }

    pub(crate) async fn call_at_depth(
        self: &Arc<Self>,
        caller: &str,
        name: &str,
        args: &Value,
        depth: u32,
    ) -> Result<Value, ToolError> {
        let tool = self.find(name)?;
        let resolve = &self.components[tool.index].resolve;
        let vals = value::args_from_json(resolve, &tool.params, args).map_err(|e| {
            ToolError::new(
                ErrorKind::InvalidArguments,
                format!("invalid arguments for `{name}`: {e}"),
            )
        })?;
        self.invoke(caller, tool, vals, depth).await
    }

    /// Calls a tool with component values (for embedders that already have typed values).
    pub async fn call_vals(
        self: &Arc<Self>,
        name: &str,
        args: Vec<Val>,
    ) -> Result<Value, ToolError> {
        let tool = self.find(name)?;
        self.invoke("host", tool, args, 0).await
    }

    fn find(&self, name: &str) -> Result<&Tool, ToolError> {
        self.tool(name).ok_or_else(|| {
            let known: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
            ToolError::new(
                ErrorKind::NotFound,
                format!("no tool named `{name}` (loaded: {})", known.join(", ")),
            )
        })
    }

    /// Runs one call in a fresh instance under the component's limits, and turns
    /// its result into JSON (or its error value into a `tool-error`), with the
    /// component's secrets redacted from both.
    async fn invoke(
        self: &Arc<Self>,
        caller: &str,
        tool: &Tool,
        args: Vec<Val>,
        depth: u32,
    ) -> Result<Value, ToolError> {
        let sandbox = &self.components[tool.index].sandbox;
        let mut result = self.invoke_json(caller, tool, args, depth).await;
        if sandbox.has_secrets() {
            match &mut result {
                Ok(v) => sandbox.redact_json(v),
                Err(e) => {
                    e.message = sandbox.redact(&e.message);
                    if let Some(d) = &mut e.detail {
                        sandbox.redact_json(d);
                    }
                }
            }
        }
        result
    }

    async fn invoke_json(
        self: &Arc<Self>,
        caller: &str,
        tool: &Tool,
        args: Vec<Val>,
        depth: u32,
    ) -> Result<Value, ToolError> {
        let name = &tool.name;
        let sandbox = &self.components[tool.index].sandbox;
        let (results, notes) = self.invoke_vals(caller, tool, args, depth).await?;
        let result = match results.first() {
            None => Value::Null,
            Some(Val::Result(r)) if tool.returns_result => match r {
                Ok(v) => v.as_deref().map(value::to_json).unwrap_or(Value::Null),
                Err(e) => {
                    let detail = e.as_deref().map(value::to_json).unwrap_or(Value::Null);
                    let mut message = format!("`{name}` returned an error: {detail}");
                    for note in notes {
                        message.push_str(&format!("; {note}"));
                    }
                    return Err(ToolError {
                        kind: ErrorKind::ToolError,
                        message,
                        detail: Some(detail),
                    });
                }
            },
            Some(v) => value::to_json(v),
        };
        let size = result.to_string().len();
        if size > sandbox.max_output {
            return Err(ToolError::new(
                ErrorKind::OutputLimit,
                format!(
                    "`{name}` returned {size} bytes, more than its limit of {} bytes",
                    sandbox.max_output
                ),
            ));
        }
        Ok(result)
    }

    /// Runs one call in a fresh instance under the component's limits; returns
    /// the component values and the host's notes on HTTP requests that did not go out.
    async fn invoke_vals(
        self: &Arc<Self>,
        caller: &str,
        tool: &Tool,
        args: Vec<Val>,
        depth: u32,
    ) -> Result<(Vec<Val>, Vec<String>), ToolError> {
        let Some(audit) = self.engine.options().audit.clone() else {
            return self.invoke_vals_unaudited(tool, args, depth).await.0;
        };
        let started = std::time::Instant::now();
        let digest = crate::audit::digest(format!("{args:?}").as_bytes());
        let (result, fuel, peak) = self.invoke_vals_unaudited(tool, args, depth).await;
        audit.record(&crate::audit::Entry {
            time: crate::audit::now(),
            kind: "call",
            caller,
            tool: &tool.name,
            args_sha256: digest,
            duration_ms: crate::audit::ms(started.elapsed()),
            fuel,
            peak_memory_bytes: peak,
            outcome: if result.is_ok() { "ok" } else { "error" },
            error: result.as_ref().err().map(|e| e.kind.as_str().to_string()),
        });
        result
    }

    /// The call itself; also returns the fuel it used (when metered) and its peak memory.
    async fn invoke_vals_unaudited(
        self: &Arc<Self>,
        tool: &Tool,
        args: Vec<Val>,
        depth: u32,
    ) -> (
        Result<(Vec<Val>, Vec<String>), ToolError>,
        Option<u64>,
        usize,
    ) {
        let loaded = &self.components[tool.index];
        let sandbox = &loaded.sandbox;
        let name = &tool.name;
        let admission = crate::schedule::admit(depth).await;
        let mut store = match sandbox.store(&self.engine, Some(self.clone()), depth) {
            Ok(mut store) => {
                store.data_mut().turn.begin(admission);
                store
            }
            Err(e) => {
                let e = ToolError::new(
                    ErrorKind::Internal,
                    format!("failed to set up `{name}`: {e:#}"),
                );
                return (Err(e), None, 0);
            }
        };
        let budget = store.get_fuel().ok();
        let outcome = tokio::time::timeout(sandbox.timeout, async {
            let instance = loaded.pre.instantiate_async(&mut store).await?;
            let func = instance.get_func(&mut store, tool.export).ok_or_else(|| {
                wasmtime::format_err!("the export of `{}` vanished", tool.function)
            })?;
            let mut results = vec![Val::Bool(false); func.ty(&store).results().len()];
            func.call_async(&mut store, &args, &mut results).await?;
            Ok::<_, wasmtime::Error>(results)
        })
        .await;

        let fuel = budget
            .filter(|_| sandbox.fuel > 0)
            .and_then(|b| Some(b - store.get_fuel().ok()?));
        let state = store.data();
        let peak = state.limiter.peak;
        let limit_ms = sandbox.timeout.as_millis();
        let result = match outcome {
            Err(_elapsed) => Err(ToolError::new(
                ErrorKind::Timeout,
                format!("`{name}` ran past its time limit of {limit_ms} ms"),
            )),
            Ok(Err(e)) => Err(classify(name, sandbox, state, &e)),
            Ok(Ok(results)) => {
                let flooded = [("stdout", &state.stdout), ("stderr", &state.stderr)]
                    .into_iter()
                    .find(|(_, pipe)| pipe.contents().len() >= sandbox.max_output);
                match flooded {
                    Some((stream, _)) => Err(ToolError::new(
                        ErrorKind::OutputLimit,
                        format!(
                            "`{name}` wrote more than its limit of {} bytes to {stream}",
                            sandbox.max_output
                        ),
                    )),
                    None => Ok((results, state.http_notes())),
                }
            }
        };
        (result, fuel, peak)
    }
}

/// Turns a failed instantiation or call into an error kind and a message.
fn classify(name: &str, sandbox: &Sandbox, state: &State, e: &wasmtime::Error) -> ToolError {
    let mb = sandbox.memory_bytes >> 20;
    if state.limiter.memory_hit {
        return ToolError::new(
            ErrorKind::Memory,
            format!("`{name}` ran out of memory: its limit is {mb} MiB"),
        );
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ToolError::new(
            ErrorKind::Timeout,
            format!(
                "`{name}` ran past its time limit of {} ms",
                sandbox.timeout.as_millis()
            ),
        ),
        Some(Trap::OutOfFuel) => ToolError::new(
            ErrorKind::Fuel,
            format!("`{name}` used up its fuel of {}", sandbox.fuel),
        ),
        trap => {
            // The trap itself (not the whole wasm backtrace), then what the guest said on stderr.
            let what = trap
                .map(|t| t.to_string())
                .unwrap_or_else(|| e.root_cause().to_string());
            let mut message = format!("`{name}` crashed: {what}");
            let stderr = tail(&state.stderr, 2000);
            if !stderr.is_empty() {
                message.push_str(&format!("\nguest stderr:\n{stderr}"));
            }
            ToolError::new(ErrorKind::Trap, message)
        }
    }
}

/// The WIT `tool-error` a guest sees when a tool it called failed.
pub(crate) fn to_wit_error(e: &ToolError) -> wit::ToolError {
    match e.kind {
        ErrorKind::InvalidArguments => wit::ToolError::InvalidArguments(e.message.clone()),
        ErrorKind::Denied => wit::ToolError::Denied(e.message.clone()),
        ErrorKind::ToolError => {
            wit::ToolError::Failed(e.detail.clone().unwrap_or(Value::Null).to_string())
        }
        ErrorKind::Internal => wit::ToolError::Other(e.message.clone()),
        _ => wit::ToolError::Unavailable(format!("{}: {}", e.kind, e.message)),
    }
}

/// The linker every component is instantiated with: WASI without sockets,
/// `wasi:http` behind the policy hook, `wasi:config`, and `witbox:agent/host`.
pub(crate) fn new_linker(engine: &Engine) -> Result<Linker<State>> {
    let mut linker = Linker::new(engine.inner());
    crate::wasi::link(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)?;
    wasmtime_wasi_config::add_to_linker(&mut linker, |s: &mut State| {
        wasmtime_wasi_config::WasiConfig::from(&s.config)
    })
    .map_err(anyhow::Error::from)?;
    wit::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(anyhow::Error::from)?;
    Ok(linker)
}

/// The component's WIT, with its docs.
///
/// Components keep their types but not their `///` docs, so `cargo xtask build`
/// embeds each guest's WIT source in a `witbox-wit` custom section. When it is
/// there, types and docs come from it; otherwise types come from the component
/// itself and the tools get generic descriptions.
fn decode_wit(bytes: &[u8]) -> Result<(Resolve, WorldId)> {
    if let Some(section) = custom_section(bytes, EMBEDDED_WIT_SECTION) {
        return embedded_wit(section).context("invalid embedded WIT (`witbox-wit` section)");
    }
    match decode(bytes).context("failed to read the component's WIT types")? {
        DecodedWasm::Component(resolve, world) => Ok((resolve, world)),
        DecodedWasm::WitPackage(..) => bail!("it is a WIT package, not a component"),
    }
}

/// The custom section that carries a component's WIT source:
/// `{"world": "name", "files": {"world.wit": "…", "deps/agent/host.wit": "…"}}`.
pub const EMBEDDED_WIT_SECTION: &str = "witbox-wit";

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
pub(crate) fn custom_section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
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

fn derive_tools(
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

fn is_result(resolve: &Resolve, ty: &Type) -> bool {
    match ty {
        Type::Id(id) => match &resolve.types[*id].kind {
            wit_parser::TypeDefKind::Result(_) => true,
            wit_parser::TypeDefKind::Type(t) => is_result(resolve, t),
            _ => false,
        },
        _ => false,
    }
}

/// Whether an export satisfies an import: the same package and interface, and
/// a semver-compatible version (same major; same minor while the major is 0).
fn compatible(import: &str, export: &str) -> bool {
    let split = |s: &str| -> (String, Option<Vec<u64>>) {
        match s.split_once('@') {
            Some((name, v)) => (
                name.to_string(),
                v.split(['.', '-', '+'])
                    .take(3)
                    .map(|p| p.parse().ok())
                    .collect::<Option<Vec<u64>>>(),
            ),
            None => (s.to_string(), None),
        }
    };
    let ((a, va), (b, vb)) = (split(import), split(export));
    if a != b {
        return false;
    }
    match (va, vb) {
        (None, None) => true,
        (Some(x), Some(y)) if x.len() == 3 && y.len() == 3 => {
            if x[0] != y[0] {
                false
            } else if x[0] == 0 {
                x[1] == y[1] && y[2] >= x[2]
            } else {
                (y[1], y[2]) >= (x[1], x[2])
            }
        }
        _ => false,
    }
}
