//! `cargo xtask build`: every guest in [`GUESTS`] into `target/guests/`, then the host.

use crate::pins::PYTHON_TEST_DEPS;
use crate::toolchain::{self, COMPONENTIZE_PY};
use crate::{artifacts, output, root, run, step};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a guest is built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A crate of the `guests/` cargo workspace (a member there too), WIT in
    /// `guests/NAME/wit`, world NAME. Cargo knows its inputs.
    Rust,
    /// `guests/NAME/app.py` built with componentize-py, WIT in `guests/NAME/wit`, world NAME.
    PythonTool,
    /// The code runner: `guests/NAME/app.py` against the `witbox:agent` WIT in `wit/`,
    /// world `code-runner`. It is not a tool, so no WIT is embedded.
    PythonRunner,
}

/// One guest component, built into `target/guests/NAME.wasm`.
pub struct Guest {
    pub name: &'static str,
    pub kind: Kind,
    /// What a componentize-py build is made from, relative to the repository: it
    /// is redone when one of these (or componentize-py) is newer than the component.
    /// Empty for the Rust guests: cargo tracks theirs.
    pub inputs: &'static [&'static str],
}

const fn rust(name: &'static str) -> Guest {
    Guest {
        name,
        kind: Kind::Rust,
        inputs: &[],
    }
}

/// Every guest, in build order. The Rust ones are also the members of
/// `guests/Cargo.toml`, which is built as one workspace.
pub const GUESTS: [Guest; 8] = [
    rust("quadratic"),
    rust("weather"),
    rust("testkit"),
    rust("badtype"),
    rust("clash"),
    rust("equation-report"),
    Guest {
        name: "python-runner",
        kind: Kind::PythonRunner,
        inputs: &[
            "guests/python-runner/app.py",
            "guests/python-runner/cells.py",
            "guests/python-runner/checkpoint.py",
            "guests/python-runner/aio.py",
            "wit/host.wit",
            "wit/runner.wit",
            "wit/worlds.wit",
        ],
    },
    Guest {
        name: "text-stats",
        kind: Kind::PythonTool,
        // `wit/deps/agent` is a link to `wit/`.
        inputs: &[
            "guests/text-stats/app.py",
            "guests/text-stats/wit/world.wit",
            "wit/host.wit",
            "wit/worlds.wit",
        ],
    },
];

pub fn build() -> Result<(), String> {
    let root = root();
    step("checking the wasm32-wasip2 target");
    toolchain::ensure_target(&mut |_| {})?;

    step("building the Rust guests (guests/, wasm32-wasip2)");
    let guests = root.join("guests");
    check_members(&guests.join("Cargo.toml"))?;
    let built = toolchain::cargo_build(&guests.join("Cargo.toml"), &mut |_| {})?;
    let out_dir = artifacts();
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("failed to create {}: {e}", out_dir.display()))?;

    let mut componentize_py = None;
    for guest in &GUESTS {
        let name = guest.name;
        let src = guests.join(name);
        let out = out_dir.join(format!("{name}.wasm"));
        if guest.kind == Kind::Rust {
            toolchain::embed_wit(
                &toolchain::built_wasm(&built, name),
                &src.join("wit"),
                name,
                &out,
            )?;
            continue;
        }
        let tool = match &componentize_py {
            Some(tool) => tool,
            None => componentize_py.insert(install_componentize_py(&root)?),
        };
        let mut inputs: Vec<PathBuf> = guest.inputs.iter().map(|i| root.join(i)).collect();
        inputs.push(tool.clone());
        if is_newer(&out, &inputs) {
            continue;
        }
        // componentize-py bundles whatever is in the folder: not stale bytecode.
        let _ = std::fs::remove_dir_all(src.join("__pycache__"));
        if guest.kind == Kind::PythonRunner {
            step(&format!(
                "building the Python runner (guests/{name}, componentize-py)"
            ));
            toolchain::componentize_runner(tool, &root.join("wit"), &[&src], &out, &mut |_| {})?;
        } else {
            step(&format!(
                "building the Python tool {name} (guests/{name}, componentize-py)"
            ));
            toolchain::componentize(tool, &src, name, None, &out, &mut |_| {})?;
        }
    }

    // The data runner is downloaded, not built: pip from `.venv`.
    install_componentize_py(&root)?;
    crate::data::data_runner(&root)?;

    step("building the host (witbox)");
    run(toolchain::cargo()
        .current_dir(&root)
        .args(["build", "-p", "witbox"]))?;

    // The shipped manifest's `[runner] packages`: resolved (witbox.lock) and built
    // into a runner of their own. Compiling the runner takes seconds; done here
    // (and kept in the user's compile cache), the first `witbox run` or MCP
    // `initialize` after a build starts in milliseconds. A no-op when up to date.
    step(
        "building and compiling the Python runner with the shipped manifest's packages (witbox runner build)",
    );
    shipped_witbox(&root, &["runner", "build"])?;
    // `witbox tools` loads every component of the shipped manifest (also the
    // componentize-py tool, as slow to compile as the runner). A no-op when the cache is warm.
    step("compiling the shipped tools into the compile cache");
    shipped_witbox(&root, &["tools"])?;
    // The data runner's module is 105 MB of wasm: compiled once, here, not in the
    // first session (a no-op when the cache holds it).
    step("compiling the data runner into the compile cache (about 90 s the first time on 2 cores)");
    shipped_witbox(&root, &["run", "--runner", "data", "-c", "pass"])?;
    Ok(())
}

/// `witbox --manifest witbox.toml ARGS` with the host just built, its stdout dropped.
fn shipped_witbox(root: &Path, args: &[&str]) -> Result<(), String> {
    run(toolchain::cargo()
        .current_dir(root)
        .env(
            "WITBOX_COMPONENTIZE_PY",
            root.join(".venv/bin/componentize-py"),
        )
        .args([
            "run",
            "-q",
            "-p",
            "witbox",
            "--",
            "--manifest",
            "witbox.toml",
        ])
        .args(args)
        .stdout(std::process::Stdio::null()))
}

/// Checks that the members of the guests' workspace are the Rust guests of
/// [`GUESTS`]: cargo builds the one list, the build copies the other.
fn check_members(manifest: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| format!("failed to read {}: {e}", manifest.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("invalid {}: {e}", manifest.display()))?;
    let mut members: Vec<&str> = table
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .map(|m| m.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    let mut rust: Vec<&str> = GUESTS
        .iter()
        .filter(|g| g.kind == Kind::Rust)
        .map(|g| g.name)
        .collect();
    members.sort_unstable();
    rust.sort_unstable();
    if members != rust {
        return Err(format!(
            "the members of {} ({}) are not the Rust guests in xtask/src/build.rs ({})",
            manifest.display(),
            members.join(", "),
            rust.join(", ")
        ));
    }
    Ok(())
}

/// The pinned componentize-py in a local `.venv` (made and filled on first use).
fn install_componentize_py(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join(".venv");
    let tool = venv.join("bin/componentize-py");
    let version = output(Command::new(&tool).arg("--version")).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(COMPONENTIZE_PY) {
        return Ok(tool);
    }
    step(&format!(
        "installing componentize-py {COMPONENTIZE_PY} into .venv"
    ));
    if !venv.join("bin/pip").exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python).arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("componentize-py=={COMPONENTIZE_PY}"),
    ]))?;
    Ok(tool)
}

/// Whether `out` exists and is newer than every input.
fn is_newer(out: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    inputs
        .iter()
        .all(|i| modified(i).is_some_and(|m| m < built))
}

/// Installs the Python test dependencies into `.venv` unless they are there at their pins.
pub fn python_test_deps(root: &Path) -> Result<(), String> {
    let python = root.join(".venv/bin/python");
    let check = PYTHON_TEST_DEPS
        .iter()
        .map(|(name, _)| format!("importlib.metadata.version({name:?})"))
        .collect::<Vec<_>>()
        .join(", ");
    let have = output(Command::new(&python).args([
        "-c",
        &format!("import importlib.metadata; print(' '.join([{check}]))"),
    ]))
    .unwrap_or_default();
    let want: Vec<&str> = PYTHON_TEST_DEPS.iter().map(|(_, v)| *v).collect();
    if have.split_whitespace().collect::<Vec<_>>() == want {
        return Ok(());
    }
    let pins: Vec<String> = PYTHON_TEST_DEPS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    step(&format!(
        "installing {} into .venv for the tests",
        pins.join(" ")
    ));
    run(Command::new(root.join(".venv/bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(&pins))
}
