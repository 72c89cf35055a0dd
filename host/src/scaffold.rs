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

/// The WASI WIT packages a tool that imports `wasi:http/outgoing-handler` needs,
/// as the host links them: copied from `wasmtime-wasi-http`'s `wit/deps` (a test
/// checks that they are the pinned crate's).
pub const WASI_HTTP_WIT: [(&str, &str); 7] = [
    ("cli.wit", include_str!("scaffold/wasi-http/cli.wit")),
    ("clocks.wit", include_str!("scaffold/wasi-http/clocks.wit")),
    (
        "filesystem.wit",
        include_str!("scaffold/wasi-http/filesystem.wit"),
    ),
    ("http.wit", include_str!("scaffold/wasi-http/http.wit")),
    ("io.wit", include_str!("scaffold/wasi-http/io.wit")),
    ("random.wit", include_str!("scaffold/wasi-http/random.wit")),
    (
        "sockets.wit",
        include_str!("scaffold/wasi-http/sockets.wit"),
    ),
];

/// What `witbox new tool` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    /// The language of the tool.
    pub lang: Lang,
    /// A tool that reads URLs with `requests` over `wasi:http` (Python only)
    /// instead of the one that greets.
    pub http: bool,
}

impl Template {
    /// The function the template exports, as `<tool>_<function>` is named.
    pub fn function(&self) -> &'static str {
        if self.http { "get" } else { "greet" }
    }

    /// Example arguments of that function, as JSON.
    pub fn example_args(&self) -> &'static str {
        if self.http {
            r#"{"url": "https://example.com/"}"#
        } else {
            r#"{"name": "Ada"}"#
        }
    }

    /// The file the tool's code is in.
    pub fn code_file(&self) -> &'static str {
        match self.lang {
            Lang::Rust => "src/lib.rs",
            Lang::Python => "app.py",
        }
    }
}

/// Writes a new tool named `name` into `dir/name`; returns that folder.
pub fn new_tool(name: &str, template: Template, dir: &Path) -> Result<PathBuf> {
    let Template { lang, http } = template;
    if http && lang != Lang::Python {
        bail!(
            "`--http` makes a Python tool (`requests` over `wasi:http`); a Rust tool reaches `wasi:http` through the `wasip2` crate, as `guests/weather` does"
        );
    }
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
    let grant = if http {
        "# It reaches only the origins listed here (scheme, host and port), for example:\n\
         # allow-http = [\"https://example.com\"]\n"
    } else {
        ""
    };
    let mut files: Vec<(String, String)> = vec![
        (
            "wit/world.wit".into(),
            if http {
                http_world_wit(name)
            } else {
                world_wit(name)
            },
        ),
        (
            "witbox.toml".into(),
            format!(
                "# `witbox --manifest {name}/witbox.toml call {snake}_{function} '{args}'`\n\
                 # To add the tool to another manifest, copy this entry (with the path made relative to it).\n\
                 [[component]]\nname = \"{name}\"\npath = \"{name}.wasm\"\n[component.policy]\n\
                 # Nothing is granted unless listed: allow-http, env, dirs, call-tools, link.\n\
                 {grant}memory-mb = {}\ntimeout-ms = {}\n",
                if lang == Lang::Python { 64 } else { 16 },
                if http { 10000 } else { 2000 },
                function = template.function(),
                args = template.example_args(),
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
        Lang::Python if http => {
            files.push(("app.py".into(), PYTHON_HTTP_APP.into()));
            files.push(("requirements.txt".into(), PYTHON_HTTP_REQUIREMENTS.into()));
            for (file, text) in WASI_HTTP_WIT {
                let package = file.trim_end_matches(".wit");
                files.push((format!("wit/deps/{package}/{file}"), text.to_string()));
            }
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

fn http_world_wit(name: &str) -> String {
    format!(
        r#"package local:{name}@0.1.0;

// Every function of the exported interface becomes a tool named `{snake}_<function>`.
// Its `///` docs are the tool's description; `- `arg`: …` lines describe the arguments.

/// Reads web pages over HTTP.
interface tool {{
    /// What a server answered.
    record page {{
        /// The HTTP status code, for example 200.
        status: u16,
        /// The `Content-Type` header, or an empty string.
        content-type: string,
        /// The body as text (at most 100000 characters).
        body: string,
    }}

    /// Fetches a URL with GET. Only the origins granted in `allow-http` can be reached.
    ///
    /// - `url`: The URL, for example `https://example.com/`.
    get: func(url: string) -> result<page, string>;
}}

world {name} {{
    include witbox:agent/agent-tool@0.1.0;
    // The host links it under the tool's `allow-http` grant.
    import wasi:http/outgoing-handler@0.2.12;
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

const PYTHON_HTTP_APP: &str = r#"import sys

import componentize_py_types
import requests
import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.tool import Page

# requests-wasi-http 0.1.0 looks for the `Err` of the bindings in `wit_world.types`;
# componentize-py 0.25.1 has it in `componentize_py_types`.
sys.modules.setdefault("wit_world.types", componentize_py_types)
from wasi_http_adapter import wasi_session  # noqa: E402

# Made when the component is built; the connection is the host's, per request.
session = wasi_session(wit_world)


class Tool(exports.Tool):
    def get(self, url: str) -> Page:
        try:
            r = session.get(url, timeout=10)
        except requests.RequestException as e:
            raise Err(str(e))
        return Page(
            status=r.status_code,
            content_type=r.headers.get("content-type", ""),
            body=r.text[:100_000],
        )
"#;

/// `requests` and the adapter that sends its requests through `wasi:http`.
const PYTHON_HTTP_REQUIREMENTS: &str = "requests==2.32.5\nrequests-wasi-http==0.1.0\n";

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
