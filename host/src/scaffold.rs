//! `witbox new tool` and `witbox build`: a ready tool to start from, in Rust or
//! Python, and the build that turns it into a component witbox loads.

pub mod toolchain;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use toolchain::{COMPONENTIZE_PY, WIT_BINDGEN};

/// The language of a new tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// wit-bindgen, built for `wasm32-wasip2`.
    Rust,
    /// componentize-py.
    Python,
}

impl std::str::FromStr for Lang {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rust" => Ok(Self::Rust),
            "python" => Ok(Self::Python),
            other => bail!("unknown language `{other}`: use `rust` or `python`"),
        }
    }
}

/// The `witbox:agent` WIT package, as the host was built with it.
const AGENT_WIT: [(&str, &str); 3] = [
    ("host.wit", include_str!("../../wit/host.wit")),
    ("runner.wit", include_str!("../../wit/runner.wit")),
    ("worlds.wit", include_str!("../../wit/worlds.wit")),
];

/// Writes a new tool named `name` into `dir/name`; returns that folder.
pub fn new_tool(name: &str, lang: Lang, dir: &Path) -> Result<PathBuf> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid || name.ends_with('-') || name.contains("--") {
        bail!(
            "`{name}` is not a valid tool name: use lower-case letters, digits and single `-` (for example `word-count`), starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("`{}` already exists", root.display());
    }
    let snake = name.replace('-', "_");
    let mut files: Vec<(String, String)> = vec![
        ("wit/world.wit".into(), world_wit(name)),
        (
            "witbox.toml".into(),
            format!(
                "# `witbox --manifest {name}/witbox.toml call {snake}_greet '{{\"name\": \"Ada\"}}'`\n\
                 # To add the tool to another manifest, copy this entry (with the path made relative to it).\n\
                 [[component]]\nname = \"{name}\"\npath = \"{name}.wasm\"\n[component.policy]\n\
                 # Nothing is granted unless listed: allow-http, env, dirs, call-tools, link.\n\
                 memory-mb = {}\ntimeout-ms = 2000\n",
                if lang == Lang::Python { 64 } else { 16 }
            ),
        ),
        (
            ".gitignore".into(),
            "target/\n*.wasm\n__pycache__/\n".into(),
        ),
    ];
    for (file, text) in AGENT_WIT {
        files.push((format!("wit/deps/agent/{file}"), text.to_string()));
    }
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), cargo_toml(name)));
            files.push(("src/lib.rs".into(), rust_lib(name)));
        }
        Lang::Python => files.push(("app.py".into(), PYTHON_APP.into())),
    }
    for (file, text) in files {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("failed to write `{}`", path.display()))?;
    }
    Ok(root)
}

fn world_wit(name: &str) -> String {
    format!(
        r#"package local:{name}@0.1.0;

// Every function of the exported interface becomes a tool named `{snake}_<function>`.
// Its `///` docs are the tool's description; `- `arg`: …` lines describe the arguments.

/// What this tool does, in one line.
interface tool {{
    /// Greets someone by name.
    ///
    /// - `name`: Who to greet, for example `Ada`.
    greet: func(name: string) -> string;
}}

world {name} {{
    include witbox:agent/agent-tool@0.1.0;
    export tool;
}}
"#,
        snake = name.replace('-', "_")
    )
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen = "={WIT_BINDGEN}"

[profile.release]
opt-level = "s"
lto = true
strip = "debuginfo"

# Its own workspace, even inside another one.
[workspace]
"#
    )
}

fn rust_lib(name: &str) -> String {
    let module = name.replace('-', "_");
    format!(
        r#"wit_bindgen::generate!({{ path: "wit", world: "{name}", generate_all }});

struct Tool;

impl exports::local::{module}::tool::Guest for Tool {{
    fn greet(name: String) -> String {{
        format!("Hello, {{name}}!")
    }}
}}

export!(Tool);
"#
    )
}

const PYTHON_APP: &str = r#"from wit_world import exports


class Tool(exports.Tool):
    def greet(self, name: str) -> str:
        return f"Hello, {name}!"
"#;

/// Builds the tool in `dir` into `dir/<name>.wasm` with its WIT docs embedded,
/// the same way `cargo xtask build` builds the shipped guests ([`toolchain`]).
/// `log` gets each command before it runs.
pub fn build(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no tool folder `{}`", dir.display()))?;
    let name = world_name(&dir)?;
    let out = dir.join(format!("{name}.wasm"));
    if dir.join("Cargo.toml").exists() {
        toolchain::ensure_target(log).map_err(anyhow::Error::msg)?;
        let built =
            toolchain::cargo_build(&dir.join("Cargo.toml"), log).map_err(anyhow::Error::msg)?;
        toolchain::embed_wit(
            &toolchain::built_wasm(&built, &name),
            &dir.join("wit"),
            &name,
            &out,
        )
        .map_err(anyhow::Error::msg)?;
    } else if dir.join("app.py").exists() {
        let tool = componentize_py(&dir)?;
        // Its `requirements.txt`, if any: pure-Python wheels locked in `witbox.lock`.
        let site = crate::packages::tool_site(&dir, &tool, log)?;
        let site = site.as_ref().map(|s| s.path.as_path());
        toolchain::componentize(&tool, &dir, &name, site, &out, log).map_err(anyhow::Error::msg)?;
    } else {
        bail!(
            "`{}` has neither Cargo.toml nor app.py: make a tool with `witbox new tool NAME`",
            dir.display()
        );
    }
    Ok(out)
}

/// The world a tool folder builds: the one in `wit/world.wit`.
fn world_name(dir: &Path) -> Result<String> {
    let path = dir.join("wit/world.wit");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("world "))
        .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '{').next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .with_context(|| format!("`{}` declares no world", path.display()))
}

/// componentize-py: `$WITBOX_COMPONENTIZE_PY`, a `.venv/bin/componentize-py` in
/// the tool's folder or above it, or one on the `PATH`.
pub(crate) fn componentize_py(dir: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WITBOX_COMPONENTIZE_PY") {
        return Ok(path.into());
    }
    for folder in dir.ancestors() {
        let candidate = folder.join(".venv/bin/componentize-py");
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("componentize-py"))
            .find(|p| p.exists())
    });
    on_path.with_context(|| {
        format!(
            "componentize-py is needed to build Python components (a Python tool, or the runner with packages): `pip install componentize-py=={COMPONENTIZE_PY}` (or set WITBOX_COMPONENTIZE_PY)"
        )
    })
}
