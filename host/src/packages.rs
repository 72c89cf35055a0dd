//! Third-party packages in the Python sandbox: `[runner] packages` (and
//! `requirements`) resolved by pip as pure-Python wheels only, pinned with their
//! sha256 in `witbox.lock`, and built with componentize-py into a runner of their own.
//!
//! Nothing of a package runs on the host. pip is asked for wheels only
//! (`--only-binary=:all:`: an sdist would run its build script here) with the
//! pure-Python tags only (`py3-none-any`), and installs what the lock names with
//! `--require-hashes`. The packages' code first runs inside componentize-py's
//! interpreter, which imports them (and every submodule) into the snapshot.
//!
//! The built runner sits beside the shipped one, named by the hash of the
//! runner's sources, componentize-py's version and the lock: a changed lock is
//! a new runner, and [`built_runner`] finds the one the manifest's lock needs.

use crate::manifest::{Manifest, RunnerEntry};
use crate::scaffold::toolchain::COMPONENTIZE_PY;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lock file, beside the manifest.
pub const LOCK_FILE: &str = "witbox.lock";

/// What the runner is built from: the code and the WIT of `cargo xtask build`'s runner.
const SOURCES: [(&str, &str); 7] = [
    (
        "src/app.py",
        include_str!("../../guests/python-runner/app.py"),
    ),
    (
        "src/cells.py",
        include_str!("../../guests/python-runner/cells.py"),
    ),
    (
        "src/checkpoint.py",
        include_str!("../../guests/python-runner/checkpoint.py"),
    ),
    (
        "src/aio.py",
        include_str!("../../guests/python-runner/aio.py"),
    ),
    ("wit/host.wit", include_str!("../../wit/host.wit")),
    ("wit/runner.wit", include_str!("../../wit/runner.wit")),
    ("wit/worlds.wit", include_str!("../../wit/worlds.wit")),
];

/// pip's target: any Python 3.14, no ABI, any platform. Only pure-Python wheels have these tags.
const PURE: [&str; 9] = [
    "--only-binary=:all:",
    "--platform",
    "any",
    "--python-version",
    "3.14",
    "--implementation",
    "py",
    "--abi",
    "none",
];

/// `witbox.lock`: the exact wheels of the runner's packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// The format's version.
    pub version: u32,
    /// The requirements it was resolved from, as the manifest gives them.
    pub requested: Vec<String>,
    /// Every package, dependencies included, sorted by name.
    #[serde(default, rename = "package")]
    pub packages: Vec<Locked>,
}

/// One pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    /// The distribution's name.
    pub name: String,
    /// Its exact version.
    pub version: String,
    /// The wheel's file name (its tags say it is pure Python).
    pub wheel: String,
    /// Where pip found it.
    pub url: String,
    /// The wheel's sha256; a download that differs fails the build.
    pub sha256: String,
    /// Its license, as its metadata gives it.
    #[serde(default)]
    pub license: String,
}

impl Lock {
    /// Reads a lock file; `None` if there is none.
    pub fn read(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read `{}`", path.display()));
            }
        };
        let lock: Lock = toml::from_str(&text)
            .with_context(|| format!("`{}` is not a valid lock file", path.display()))?;
        if lock.version != 1 {
            bail!(
                "`{}` has version {}; this witbox reads version 1",
                path.display(),
                lock.version
            );
        }
        Ok(Some(lock))
    }

    /// Its packages as `name version`.
    pub fn names(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect()
    }

    /// The lock as written to the file.
    pub fn text(&self) -> String {
        format!(
            "# Written by `witbox runner build`: the exact packages of the Python runner,\n\
             # resolved from the manifest's `[runner] packages`. Check it in; a build\n\
             # fails if a download does not match its sha256.\n\n{}",
            toml::to_string(self).expect("a lock serializes")
        )
    }
}

/// The requirements of the runner: `packages`, then the lines of `requirements`.
pub fn requested(manifest: &Manifest, entry: &RunnerEntry) -> Result<Vec<String>> {
    let mut out = entry.packages.clone();
    if let Some(file) = &entry.requirements {
        let path = manifest.resolve(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "failed to read the runner's requirements `{}`",
                path.display()
            )
        })?;
        out.extend(requirement_lines(&text)?);
    }
    check_requirements(&out)?;
    Ok(out)
}

/// The requirements of a requirements file, without comments and blank lines.
fn requirement_lines(text: &str) -> Result<Vec<String>> {
    let out: Vec<String> = text
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    check_requirements(&out)?;
    Ok(out)
}

/// Only names with versions: no options, URLs or paths (pip would fetch or build those).
fn check_requirements(requirements: &[String]) -> Result<()> {
    for r in requirements {
        let starts_well = r.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !starts_well || r.contains("://") || r.contains('/') || r.contains('@') {
            bail!(
                "package `{r}` is not a requirement pip can resolve from the registry: give a name \
                 and version (`sympy==1.14.0`); options, URLs and paths are not accepted"
            );
        }
    }
    Ok(())
}

/// Whether the runner has packages (so needs `witbox runner build`).
pub fn wanted(entry: &RunnerEntry) -> bool {
    !entry.packages.is_empty() || entry.requirements.is_some()
}

/// The runner's packages as `name version`, from the lock (empty when it has none
/// or the lock cannot be read: loading the runner says why).
pub fn listed(manifest: &Manifest, entry: &RunnerEntry) -> Vec<String> {
    if !wanted(entry) {
        return Vec::new();
    }
    Lock::read(&lock_path(manifest))
        .ok()
        .flatten()
        .map(|l| l.names())
        .unwrap_or_default()
}

/// How the prompts name the runner's packages.
pub fn describe(packages: &[String]) -> String {
    if packages.is_empty() {
        "no third-party packages".into()
    } else {
        format!(
            "the packages {} (no others can be installed)",
            packages.join(", ")
        )
    }
}

/// The lock file of a manifest.
pub fn lock_path(manifest: &Manifest) -> PathBuf {
    manifest.resolve(Path::new(LOCK_FILE))
}

/// The built runner the manifest's packages need, and the lock it was built
/// from, checked: the lock exists, is for the manifest's requirements, and its
/// runner has been built.
pub fn built_runner(manifest: &Manifest, entry: &RunnerEntry) -> Result<(PathBuf, Lock)> {
    let requested = requested(manifest, entry)?;
    let lock_file = lock_path(manifest);
    let Some(lock) = Lock::read(&lock_file)? else {
        bail!(
            "the runner's packages ({}) are not built: run `witbox runner build` (it writes `{}`)",
            requested.join(", "),
            lock_file.display()
        );
    };
    if lock.requested != requested {
        bail!(
            "`{}` was made for the packages {:?}, but the manifest asks for {:?}: run `witbox runner build`",
            lock_file.display(),
            lock.requested,
            requested
        );
    }
    let path = built_path(manifest, entry, &lock);
    if !path.exists() {
        bail!(
            "the runner with the packages of `{}` is not built: run `witbox runner build`",
            lock_file.display()
        );
    }
    Ok((path, lock))
}

/// Where the runner of `lock` is built: beside the shipped runner, named by the
/// hash of what it is made of.
fn built_path(manifest: &Manifest, entry: &RunnerEntry, lock: &Lock) -> PathBuf {
    let mut hash = Sha256::new();
    for (name, text) in SOURCES {
        hash.update(name.as_bytes());
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update(COMPONENTIZE_PY.as_bytes());
    hash.update(lock.text().as_bytes());
    let key = crate::text::hex(&hash.finalize()[..8]);
    manifest
        .resolve(&entry.path)
        .with_file_name(format!("python-runner-{key}.wasm"))
}

/// How `witbox runner build` goes.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Fail instead of writing a lock that is missing or out of date (for CI).
    pub locked: bool,
    /// Resolve again even if the lock is up to date (newer versions).
    pub update: bool,
    /// componentize-py; by default the one `witbox build` finds.
    pub componentize_py: Option<PathBuf>,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The runner component.
    pub path: PathBuf,
    /// The lock it was built from.
    pub lock: Lock,
    /// Whether the lock file was (re)written.
    pub wrote_lock: bool,
    /// Whether the runner was already built.
    pub up_to_date: bool,
    /// The size of each package once installed, in the lock's order (empty when up to date).
    pub sizes: Vec<u64>,
}

/// Resolves (or reads) the lock and builds the runner with its packages.
pub fn build(
    manifest: &Manifest,
    entry: &RunnerEntry,
    options: &BuildOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Built> {
    let requested = requested(manifest, entry)?;
    if requested.is_empty() {
        bail!("the manifest's `[runner]` lists no `packages`: there is nothing to build");
    }
    let componentize_py = match &options.componentize_py {
        Some(p) => p.clone(),
        None => crate::scaffold::componentize_py(manifest.resolve(Path::new(".")).as_path())?,
    };
    let python = python_beside(&componentize_py);
    let (lock, wrote_lock) = locked(&python, &requested, &lock_path(manifest), options, log)?;
    let path = built_path(manifest, entry, &lock);
    if path.exists() {
        return Ok(Built {
            path,
            lock,
            wrote_lock,
            up_to_date: true,
            sizes: Vec::new(),
        });
    }
    let work = Scratch::new(&path)?;
    let site = work.0.join("site");
    install(&python, &lock, &site, &work.0, log)?;
    let sizes = sizes(&site, &lock)?;
    for (name, text) in SOURCES {
        let file = work.0.join(name);
        std::fs::create_dir_all(file.parent().expect("a folder"))?;
        std::fs::write(&file, text)?;
    }
    let names = top_level_names(&site)?;
    std::fs::write(
        work.0.join("src/_witbox_packages.py"),
        format!(
            "\"\"\"The packages `witbox runner build` put in this runner: imported at build time.\"\"\"\n\n\
             NAMES = {}\n",
            serde_json::to_string(&names)?
        ),
    )?;
    log(&format!(
        "building the runner with {} (componentize-py {COMPONENTIZE_PY}; a minute or more)",
        names.join(", ")
    ));
    let partial = path.with_extension("wasm.partial");
    let src = work.0.join("src");
    let built = crate::scaffold::toolchain::componentize_runner(
        &componentize_py,
        &work.0.join("wit"),
        &[&src, &site],
        &partial,
        log,
    );
    if let Err(e) = built {
        let _ = std::fs::remove_file(&partial);
        bail!("componentize-py could not build the runner with the packages: {e}");
    }
    std::fs::rename(&partial, &path)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(Built {
        path,
        lock,
        wrote_lock,
        up_to_date: false,
        sizes,
    })
}

/// The lock in `lock_file` if it is for `requested` (and no `update` is asked
/// for), else a new resolution written there; and whether it was written.
fn locked(
    python: &Path,
    requested: &[String],
    lock_file: &Path,
    options: &BuildOptions,
    log: &mut dyn FnMut(&str),
) -> Result<(Lock, bool)> {
    let old = Lock::read(lock_file)?;
    let fresh = old.as_ref().is_some_and(|l| l.requested == requested);
    if fresh && !options.update {
        return Ok((old.expect("checked"), false));
    }
    if options.locked {
        bail!(
            "`{}` is {} and `--locked` forbids writing it: run `witbox runner build` without `--locked`",
            lock_file.display(),
            if old.is_none() {
                "missing"
            } else {
                "not for the manifest's packages"
            }
        );
    }
    log(&format!(
        "resolving {} with pip (pure-Python wheels only)",
        requested.join(" ")
    ));
    let lock = resolve(python, requested)?;
    std::fs::write(lock_file, lock.text())
        .with_context(|| format!("failed to write `{}`", lock_file.display()))?;
    Ok((lock, true))
}

/// The installed packages of a Python tool's build (removed when dropped).
pub struct ToolSite {
    _work: Scratch,
    /// The folder to put on the build's Python path.
    pub path: PathBuf,
}

/// The packages of the Python tool in `dir`: its `requirements.txt`, locked in
/// its `witbox.lock` as the runner's are, installed for the build. `None` when
/// the tool has no requirements.
pub fn tool_site(
    dir: &Path,
    componentize_py: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Option<ToolSite>> {
    let file = dir.join("requirements.txt");
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("failed to read `{}`", file.display()))?;
    let requested = requirement_lines(&text)?;
    if requested.is_empty() {
        return Ok(None);
    }
    let python = python_beside(componentize_py);
    let lock_file = dir.join(LOCK_FILE);
    let (lock, wrote) = locked(
        &python,
        &requested,
        &lock_file,
        &BuildOptions::default(),
        log,
    )?;
    if wrote {
        log(&format!("wrote {}", lock_file.display()));
    }
    let work = Scratch::new(&dir.join("site"))?;
    let path = work.0.join("site");
    install(&python, &lock, &path, &work.0, log)?;
    Ok(Some(ToolSite { _work: work, path }))
}

/// The Python of componentize-py's virtual environment (which has pip), or `python3`.
fn python_beside(componentize_py: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("WITBOX_PYTHON") {
        return p.into();
    }
    let beside = componentize_py.with_file_name("python");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("python3")
    }
}

fn pip(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "--disable-pip-version-check", "--no-input"]);
    cmd
}

/// pip's resolution of `requested` for the sandbox, as a lock.
fn resolve(python: &Path, requested: &[String]) -> Result<Lock> {
    let work = Scratch::new(&std::env::temp_dir().join("witbox-resolve"))?;
    let chosen = match dry_run(python, requested, &PURE, &work.0)? {
        Ok(chosen) => chosen,
        Err(stderr) => return Err(refusal(python, requested, &stderr, &work.0)),
    };
    let mut packages = Vec::new();
    for item in &chosen {
        let Some(Chosen {
            name,
            version,
            url,
            wheel,
        }) = Chosen::of(item)
        else {
            bail!("pip's report names a package without a name, version or URL: {item}");
        };
        if !is_pure(&wheel) {
            bail!("`{name}` {version}: pip chose `{wheel}`, which is not a pure-Python wheel");
        }
        let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
            .as_str()
            .with_context(|| format!("pip gave no sha256 for `{wheel}`"))?;
        packages.push(Locked {
            name,
            version,
            wheel,
            url,
            sha256: sha256.to_string(),
            license: license(&item["metadata"]),
        });
    }
    packages.sort_by_key(|p| p.name.to_lowercase());
    Ok(Lock {
        version: 1,
        requested: requested.to_vec(),
        packages,
    })
}

/// What pip would install for `requested` with the target options `tags` (a dry
/// run into `work`): the report's `install` items, or pip's stderr if it found none.
fn dry_run(
    python: &Path,
    requested: &[String],
    tags: &[&str],
    work: &Path,
) -> Result<std::result::Result<Vec<serde_json::Value>, String>> {
    let report = work.join("report.json");
    let out = pip(python)
        .args([
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--target",
        ])
        .arg(work.join("nowhere"))
        .arg("--report")
        .arg(&report)
        .args(tags)
        .args(requested)
        .output()
        .with_context(|| format!("failed to start pip (`{} -m pip`)", python.display()))?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).context("pip wrote no report")?)
            .context("pip's report is not JSON")?;
    match report["install"].take() {
        serde_json::Value::Array(items) => Ok(Ok(items)),
        _ => bail!("pip's report has no `install`"),
    }
}

/// One wheel of pip's report.
struct Chosen {
    name: String,
    version: String,
    url: String,
    /// The file name, from the URL.
    wheel: String,
}

impl Chosen {
    fn of(item: &serde_json::Value) -> Option<Self> {
        let url = item["download_info"]["url"].as_str()?;
        Some(Self {
            name: item["metadata"]["name"].as_str()?.to_string(),
            version: item["metadata"]["version"].as_str()?.to_string(),
            wheel: url.rsplit('/').next().unwrap_or(url).to_string(),
            url: url.to_string(),
        })
    }
}

/// Whether a wheel's file name has pure-Python tags (`{python}-none-any`).
fn is_pure(wheel: &str) -> bool {
    wheel.ends_with("-none-any.whl")
}

/// A package's license in a few words: the SPDX expression, the classifier, or the field.
fn license(meta: &serde_json::Value) -> String {
    if let Some(spdx) = meta["license_expression"].as_str() {
        return spdx.to_string();
    }
    let classifier = meta["classifier"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            c.as_str()?
                .strip_prefix("License :: ")
                .map(|l| l.rsplit(" :: ").next().unwrap_or(l).to_string())
        });
    if let Some(c) = classifier {
        return c;
    }
    let field = meta["license"]
        .as_str()
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    crate::text::head(field, 60).to_string()
}

/// Why pip found no pure-Python wheels: it asks again for this machine's wheels
/// and names the packages that have only compiled ones.
fn refusal(python: &Path, requested: &[String], pure_error: &str, work: &Path) -> anyhow::Error {
    // This machine's wheels, to name the packages that have only compiled ones.
    let native = ["--only-binary=:all:", "--python-version", "3.14"];
    let found: Vec<Chosen> = dry_run(python, requested, &native, work)
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .iter()
        .filter_map(Chosen::of)
        .filter(|c| !is_pure(&c.wheel))
        .collect();
    if found.is_empty() {
        let why = pure_error
            .trim()
            .lines()
            .filter(|l| l.starts_with("ERROR"))
            .collect::<Vec<_>>()
            .join("; ");
        return anyhow::anyhow!(
            "pip found no pure-Python wheels for {}: {}. Only wheels are accepted (a source \
             distribution would run its build script on this machine), and only pure-Python ones",
            requested.join(" "),
            if why.is_empty() {
                pure_error.trim()
            } else {
                &why
            }
        );
    }
    let lines: Vec<String> = found
        .iter()
        .map(|Chosen { name, version, wheel, .. }| {
            // NAME-VERSION[-BUILD]-PYTHON-ABI-PLATFORM.whl: the last three are the tag.
            let parts: Vec<&str> = wheel.trim_end_matches(".whl").rsplitn(4, '-').collect();
            let tag = match parts[..] {
                [platform, abi, python, _] => format!("{python}-{abi}-{platform}"),
                _ => wheel.clone(),
            };
            format!(
                "`{name}` {version} has no pure-Python wheel: its wheel `{wheel}` is tagged `{tag}`, \
                 compiled code for this machine, which cannot run in the WebAssembly sandbox"
            )
        })
        .collect();
    anyhow::anyhow!(
        "{}; the witbox sandbox takes only pure-Python wheels (tagged `py3-none-any`)",
        lines.join("; ")
    )
}

/// Installs the locked wheels into `site`, each checked against its sha256.
fn install(
    python: &Path,
    lock: &Lock,
    site: &Path,
    work: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let requirements = work.join("locked.txt");
    let lines: Vec<String> = lock
        .packages
        .iter()
        .map(|p| format!("{}=={} --hash=sha256:{}", p.name, p.version, p.sha256))
        .collect();
    std::fs::write(&requirements, lines.join("\n") + "\n")?;
    log(&format!(
        "installing {} locked wheels (sha256 checked)",
        lock.packages.len()
    ));
    let out = pip(python)
        .args([
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--require-hashes",
            "--target",
        ])
        .arg(site)
        .args(PURE)
        .arg("-r")
        .arg(&requirements)
        .output()
        .with_context(|| format!("failed to start pip (`{} -m pip`)", python.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("DO NOT MATCH THE HASHES") {
            bail!(
                "a wheel does not match its sha256 in {LOCK_FILE} (the lock was edited, or the registry \
                 serves different bytes): {}",
                stderr.trim()
            );
        }
        bail!("pip could not install the locked wheels: {}", stderr.trim());
    }
    Ok(())
}

/// The size of each locked package once installed, from its `RECORD`.
fn sizes(site: &Path, lock: &Lock) -> Result<Vec<u64>> {
    let records = dist_infos(site)?;
    Ok(lock
        .packages
        .iter()
        .map(|p| {
            let key = normalize(&p.name);
            records
                .iter()
                .filter(|(name, _)| *name == key)
                .map(|(_, record)| {
                    record
                        .lines()
                        .filter_map(|l| l.rsplit(',').next()?.parse::<u64>().ok())
                        .sum::<u64>()
                })
                .sum()
        })
        .collect())
}

/// The `(normalized name, RECORD text)` of each installed distribution.
fn dist_infos(site: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in
        std::fs::read_dir(site).with_context(|| format!("failed to list `{}`", site.display()))?
    {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = file.strip_suffix(".dist-info") {
            let name = stem.rsplit_once('-').map_or(stem, |(n, _)| n);
            let record = std::fs::read_to_string(entry.path().join("RECORD")).unwrap_or_default();
            out.push((normalize(name), record));
        }
    }
    Ok(out)
}

fn normalize(name: &str) -> String {
    name.to_lowercase().replace(['-', '.'], "_")
}

/// The importable top-level names in `site`: packages (folders) and modules (`.py`).
fn top_level_names(site: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(site)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type()?.is_dir();
        let has_python = |dir: &Path| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".py"))
        };
        let name = if is_dir {
            if !has_python(&entry.path()) {
                continue; // data (`share/man`), not a package
            }
            file.clone()
        } else if let Some(stem) = file.strip_suffix(".py") {
            stem.to_string()
        } else {
            continue;
        };
        let identifier = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if identifier && name != "bin" && name != "__pycache__" {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// A work folder that is removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(beside: &Path) -> Result<Self> {
        let name = beside
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("{name}.{}.build", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pure_wheels_are_pure() {
        assert!(is_pure("sympy-1.14.0-py3-none-any.whl"));
        assert!(is_pure("six-1.17.0-py2.py3-none-any.whl"));
        assert!(!is_pure(
            "numpy-2.3.5-cp314-cp314-manylinux_2_27_x86_64.whl"
        ));
        assert!(!is_pure("cffi-2.0.0-cp314-abi3-any.whl"));
    }

    #[test]
    fn the_prompts_name_the_packages() {
        assert_eq!(describe(&[]), "no third-party packages");
        assert_eq!(
            describe(&["sympy 1.14.0".into(), "mpmath 1.3.0".into()]),
            "the packages sympy 1.14.0, mpmath 1.3.0 (no others can be installed)"
        );
    }

    #[test]
    fn a_lock_round_trips_through_its_text() {
        let lock = Lock {
            version: 1,
            requested: vec!["a==1".into()],
            packages: vec![Locked {
                name: "a".into(),
                version: "1".into(),
                wheel: "a-1-py3-none-any.whl".into(),
                url: "https://example/a-1-py3-none-any.whl".into(),
                sha256: "00".into(),
                license: "MIT".into(),
            }],
        };
        assert_eq!(toml::from_str::<Lock>(&lock.text()).unwrap(), lock);
    }
}
