//! Loading: compile each component of a manifest (or only those a call can
//! reach), add each after the components it imports from, and link each import
//! to its exporter, whose calls run in the exporter's own sandbox.

use super::describe::{decode_wit, derive_tools};
use super::{Loaded, Registry};
use crate::engine::{Engine, EngineOptions};
use crate::manifest::{ComponentEntry, Manifest};
use crate::policy::Sandbox;
use crate::store::{Args, Reply, Request, State};
use anyhow::{Context, Result, bail};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, Linker, types};

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

impl Registry {
    /// Loads every component of a manifest. Fuel is compiled in if any policy sets it.
    pub fn load(manifest: &Manifest, options: EngineOptions) -> Result<Arc<Self>> {
        Self::load_on(manifest, Self::engine_for(manifest, options)?)
    }

    /// The engine [`Registry::load`] builds: fuel is compiled in if any policy sets it.
    pub fn engine_for(manifest: &Manifest, mut options: EngineOptions) -> Result<Engine> {
        options.fuel |=
            manifest.runner.policy.fuel > 0 || manifest.component.iter().any(|c| c.policy.fuel > 0);
        Engine::new(options)
    }

    /// [`Registry::load`] on an engine from [`Registry::engine_for`].
    pub fn load_on(manifest: &Manifest, engine: Engine) -> Result<Arc<Self>> {
        Self::load_entries(manifest, engine, manifest.component.iter().collect())
    }

    /// Loads only the components a call of tools matching `patterns` can reach:
    /// those whose tools could match, the components they link to, and those whose
    /// tools they may call (`call-tools`), and so on. So `witbox call
    /// quadratic_solve` does not compile every other component of the manifest
    /// first. With no patterns it loads nothing; a pattern that no component could
    /// match loads everything, so the error can list the tools there are.
    ///
    /// It serves one caller (a CLI command), so its pool is sized for one call
    /// chain, not for a server's crowd: reserving the default pool's thousand
    /// stacks and memories would cost more than the call.
    pub fn load_for(
        manifest: &Manifest,
        mut options: EngineOptions,
        patterns: &[String],
    ) -> Result<Arc<Self>> {
        if options.max_instances == 0 {
            options.max_instances = crate::limits::ONE_CALLER_INSTANCES;
        }
        let entries = &manifest.component;
        let prefix = |e: &ComponentEntry| format!("{}_", e.name.replace('-', "_"));
        let reaches = |pattern: &str, e: &ComponentEntry| could_match(pattern, &prefix(e));
        if patterns
            .iter()
            .any(|p| !entries.iter().any(|e| reaches(p, e)))
        {
            return Self::load(manifest, options);
        }
        let engine = Self::engine_for(manifest, options)?;
        let mut wanted: Vec<&ComponentEntry> = entries
            .iter()
            .filter(|e| patterns.iter().any(|p| reaches(p, e)))
            .collect();
        let mut i = 0;
        while let Some(entry) = wanted.get(i).copied() {
            for other in entries {
                let needed = entry.policy.link.contains(&other.name)
                    || entry.policy.call_tools.iter().any(|p| reaches(p, other));
                if needed && !wanted.iter().any(|w| w.name == other.name) {
                    wanted.push(other);
                }
            }
            i += 1;
        }
        // Keep manifest order.
        let wanted = entries
            .iter()
            .filter(|e| wanted.iter().any(|w| w.name == e.name))
            .collect();
        Self::load_entries(manifest, engine, wanted)
    }

    fn load_entries(
        manifest: &Manifest,
        engine: Engine,
        entries: Vec<&ComponentEntry>,
    ) -> Result<Arc<Self>> {
        let linker = crate::linker::new(&engine)?;
        let mut registry = Registry {
            engine,
            linker,
            components: Vec::new(),
            tools: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut pending = Vec::new();
        for entry in entries {
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

    /// Loads one component file with an empty policy, to see whether it works and
    /// what tools it gives. Its tools are named after the file.
    pub fn check_file(path: &Path, options: EngineOptions) -> Result<Arc<Self>> {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let name: String = stem
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if crate::manifest::check_name(&name).is_err() {
            bail!(
                "the file name `{}` gives the tool prefix `{name}`, which is not a valid component name: rename the file to up to 32 lower-case letters, digits, `_` or `-`, starting with a letter (for example `my-tool.wasm`)",
                path.file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default()
            );
        }
        let manifest = Manifest {
            component: vec![ComponentEntry {
                name,
                path: path.to_path_buf(),
                policy: Default::default(),
                config: Default::default(),
            }],
            ..Manifest::default()
        };
        Self::load(&manifest, options)
    }

    fn compile(
        &self,
        name: &str,
        path: &Path,
        sandbox: Sandbox,
        links: &[String],
    ) -> Result<Pending> {
        let bytes = crate::limits::read_file(path, crate::limits::MAX_COMPONENT_BYTES)
            .with_context(|| {
                format!(
                    "failed to read component `{name}` from `{}` (run `cargo xtask build` to build the guests)",
                    path.display()
                )
            })?;
        // By the file's index, so a cached component is not hashed on every start
        // (a Python tool is 18 MB).
        let component = self
            .engine
            .compile_read_file(name, path, &bytes)
            .with_context(|| {
                format!(
                    "failed to load component `{name}` from `{}`",
                    path.display()
                )
            })?;
        let engine = self.engine.inner();
        let imports = component
            .component_type()
            .imports(engine)
            .filter(|(import, item)| {
                matches!(item.ty, types::ComponentItem::ComponentInstance(_))
                    && !import.starts_with("wasi:")
                    && !import.starts_with("witbox:agent/")
            })
            .map(|(import, _)| import.to_string())
            .collect();
        let exports = component
            .component_type()
            .exports(engine)
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
    /// components. A linked call goes through the one guarded path, in the
    /// exporter's own sandbox, with the exporter's redaction and result cap.
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
                instance
                    .func_new_async(&tool.function, move |mut store, _ty, params, results| {
                        let target = target.clone();
                        Box::new(async move {
                            let state = store.data_mut();
                            state.turn.waits_on_host();
                            let importer = state.caller.clone();
                            let depth = state.depth + 1;
                            let Some(tools) = state.tools.clone() else {
                                wasmtime::bail!("`{importer}` has no tools to call `{target}` in");
                            };
                            let request = Request {
                                caller: &importer,
                                depth,
                                tool: &target,
                                args: Args::Linked(params.to_vec()),
                                refused: None,
                            };
                            match tools.call(request).await {
                                Ok(Reply::Vals(values)) if values.len() == results.len() => {
                                    results.clone_from_slice(&values);
                                    Ok(())
                                }
                                Ok(_) => wasmtime::bail!(
                                    "the linked call `{importer}` → `{target}` returned the wrong shape"
                                ),
                                Err(e) => wasmtime::bail!(
                                    "the linked call `{importer}` → `{target}` failed: {e}"
                                ),
                            }
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
        let tools = derive_tools(&name, &component, &resolve, world, index).with_context(fail)?;
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
            name,
            path,
            pre,
            sandbox: Arc::new(sandbox),
            resolve: Arc::new(resolve),
            exports,
        });
        Ok(())
    }
}

/// Whether the glob `pattern` could match a tool name that starts with `prefix`:
/// its literal start (up to the first `*`, `?` or `[`) and the prefix agree.
fn could_match(pattern: &str, prefix: &str) -> bool {
    match pattern.find(['*', '?', '[']) {
        None => pattern.starts_with(prefix),
        Some(glob) => {
            let literal = &pattern[..glob];
            literal.starts_with(prefix) || prefix.starts_with(literal)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_semver() {
        let i = "witbox:quadratic/solver@0.1.0";
        assert!(compatible(i, "witbox:quadratic/solver@0.1.0"));
        assert!(compatible(i, "witbox:quadratic/solver@0.1.3"));
        // While the major is 0, a new minor may break.
        assert!(!compatible(i, "witbox:quadratic/solver@0.2.0"));
        // An older patch lacks what the importer may use.
        assert!(!compatible("witbox:q/s@0.1.2", "witbox:q/s@0.1.1"));
        assert!(compatible("witbox:q/s@1.2.0", "witbox:q/s@1.3.0"));
        assert!(!compatible("witbox:q/s@1.2.0", "witbox:q/s@1.1.9"));
        assert!(!compatible("witbox:q/s@1.0.0", "witbox:q/s@2.0.0"));
        assert!(!compatible(i, "witbox:quadratic/other@0.1.0"));
        assert!(compatible("witbox:q/s", "witbox:q/s"));
        assert!(!compatible("witbox:q/s", "witbox:q/s@0.1.0"));
    }

    #[test]
    fn tool_patterns_reach_components_by_prefix() {
        assert!(could_match("quadratic_solve", "quadratic_"));
        assert!(could_match("quadratic_*", "quadratic_"));
        assert!(could_match("*", "weather_"));
        assert!(could_match("quad*", "quadratic_"));
        assert!(!could_match("weather_current", "quadratic_"));
        assert!(!could_match("quadratic", "quadratic_"));
    }
}
