//! Shared helpers: artifact paths, manifests in temp dirs, golden files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use witbox::{EngineOptions, Manifest, Registry};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built guest; fails with the command that builds it when it is missing.
pub fn guest(name: &str) -> PathBuf {
    let path = root().join("target/guests").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "missing guest {}: run `cargo xtask build` first",
        path.display()
    );
    path
}

/// A fresh temporary folder under `target/`, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root()
            .join("target/test-tmp")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A FIFO at `path` (`mkfifo`): a file that blocks whoever opens it.
pub fn fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {} failed", path.display());
}

/// The real `witbox` binary with `--manifest` and the tests' compile cache.
pub fn witbox_command(manifest: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_witbox"));
    cmd.arg("--manifest")
        .arg(manifest)
        .env("WITBOX_CACHE_DIR", root().join("target/test-cache"))
        // Many runners share it (each package set is one); never pruned mid-run.
        .env(
            "WITBOX_CACHE_MAX_MB",
            (TEST_CACHE_MAX_BYTES >> 20).to_string(),
        );
    cmd
}

/// The tests' cache keeps everything a test run compiles.
const TEST_CACHE_MAX_BYTES: u64 = 64 << 30;

/// Compiled components are cached here, so only the first test run compiles.
pub fn options() -> EngineOptions {
    EngineOptions {
        cache_dir: Some(root().join("target/test-cache")),
        cache_max_bytes: TEST_CACHE_MAX_BYTES,
        ..Default::default()
    }
}

/// One `[[component]]` entry for a built guest, with extra TOML lines (its policy, config).
pub fn entry(name: &str, guest_name: &str, extra: &str) -> String {
    format!(
        "[[component]]\nname = \"{name}\"\npath = {:?}\n{extra}\n",
        guest(guest_name)
    )
}

/// Loads a registry from manifest text.
pub fn load(manifest: &str) -> anyhow::Result<Arc<Registry>> {
    let manifest = Manifest::parse(manifest, &root())?;
    Registry::load(&manifest, options())
}

/// Loads a registry with one guest and a policy.
pub fn registry(guest_name: &str, extra: &str) -> Arc<Registry> {
    load(&entry(guest_name, guest_name, extra)).expect("failed to load the test registry")
}

/// Compares with `tests/all/golden/NAME`; `BLESS=1` rewrites the file.
pub fn golden(name: &str, actual: &str) {
    let path = root().join("tests/all/golden").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}: run with BLESS=1", path.display()));
    assert_eq!(
        expected,
        actual,
        "golden file {} differs (BLESS=1 to accept)",
        path.display()
    );
}

/// The tools of a registry as pretty JSON, for golden files.
pub fn tools_json(registry: &Registry) -> String {
    serde_json::to_string_pretty(registry.tools()).unwrap() + "\n"
}

/// A manifest text whose runner is the built Python runner, with `[runner.policy]` lines,
/// and the quadratic tool loaded.
pub fn runner_manifest(policy: &str) -> String {
    format!(
        "{}\n[runner]\npath = {:?}\nmax-sessions = 4\n[runner.policy]\n{policy}\n",
        entry("quadratic", "quadratic", ""),
        guest("python-runner")
    )
}

/// The Python runner with a policy. The first call compiles it (about 12 s) while
/// holding a lock, so parallel tests wait for the cache instead of compiling too.
pub fn runner(policy: &str) -> Arc<witbox::Runner> {
    compiling(|| {
        let manifest = Manifest::parse(&runner_manifest(policy), &root()).unwrap();
        let registry = Registry::load(&manifest, options()).unwrap();
        witbox::Runner::load(&manifest, &manifest.runner, registry).unwrap()
    })
}

/// Runs `f`, which may compile the Python runner, one test at a time.
pub fn compiling<T>(f: impl FnOnce() -> T) -> T {
    static COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = COMPILE.lock().unwrap_or_else(|p| p.into_inner());
    f()
}

/// A fresh session of the Python runner with a policy.
pub async fn session(policy: &str) -> witbox::Session {
    runner(policy).session().await.unwrap()
}

/// Runs one cell; panics if it could not run at all.
pub async fn cell(session: &mut witbox::Session, code: &str) -> witbox::RunOutcome {
    session.run(code).await.unwrap()
}

/// Asserts that `import MODULE` in `session` is refused with the sandbox's message and `why`.
pub async fn assert_import_refused(session: &mut witbox::Session, module: &str, why: &str) {
    let o = cell(session, &format!("import {module}")).await;
    let message = format!("module `{module}` is not available in the witbox sandbox: {why}");
    assert_eq!(
        error_of(&o),
        ("ModuleNotFoundError", message.as_str()),
        "import {module}"
    );
}

/// The error type and message of an outcome, or ("", "") when it succeeded.
pub fn error_of(o: &witbox::RunOutcome) -> (&str, &str) {
    o.error
        .as_ref()
        .map(|e| (e.kind.as_str(), e.message.as_str()))
        .unwrap_or(("", ""))
}

/// The `http://…` URL a `witbox serve` or `witbox mcp --http` child prints in the
/// first line of its stderr. The rest of its stderr is read on (and dropped) by a
/// thread, so that its later lines do not find a closed pipe.
pub fn served_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .to_string()
}
