//! Third-party packages in the runner: a real pip resolving real wheels from the
//! registry, witbox.lock, and a runner built with them by componentize-py.

use crate::support::*;
use witbox::packages::{self, BuildOptions, Lock};
use witbox::{Manifest, Registry, Runner};

/// A manifest in a new folder whose runner asks for `packages`.
fn manifest_with(label: &str, packages: &str) -> (TempDir, Manifest) {
    let dir = TempDir::new(label);
    let text = format!(
        "[runner]\npath = {:?}\npackages = {packages}\n",
        guest("python-runner")
    );
    dir.write("witbox.toml", &text);
    let manifest = Manifest::load(&dir.path().join("witbox.toml")).unwrap();
    (dir, manifest)
}

fn build(manifest: &Manifest, options: BuildOptions) -> anyhow::Result<packages::Built> {
    let options = BuildOptions {
        componentize_py: Some(root().join(".venv/bin/componentize-py")),
        ..options
    };
    compiling(|| packages::build(manifest, &manifest.runner, &options, &mut |_| {}))
}

fn error(result: anyhow::Result<packages::Built>) -> String {
    format!("{:#}", result.expect_err("the build should fail"))
}

#[tokio::test]
async fn a_runner_with_sympy_builds_from_a_lock_and_solves() {
    let (dir, manifest) = manifest_with("pkg-sympy", r#"["sympy==1.14.0"]"#);
    // Before a build, the runner says what to do.
    let e = Runner::load(
        &manifest,
        &manifest.runner,
        Registry::load(&manifest, options()).unwrap(),
    )
    .err()
    .unwrap();
    assert_eq!(
        format!("{e:#}"),
        format!(
            "the runner's packages (sympy==1.14.0) are not built: run `witbox runner build` (it writes `{}`)",
            dir.path().join("witbox.lock").display()
        )
    );
    let built = build(&manifest, BuildOptions::default()).unwrap();
    assert!(built.wrote_lock);
    let lock = Lock::read(&dir.path().join("witbox.lock"))
        .unwrap()
        .unwrap();
    assert_eq!(lock, built.lock);
    let names: Vec<_> = lock
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(names, [("mpmath", "1.3.0"), ("sympy", "1.14.0")]);
    for p in &lock.packages {
        assert!(p.wheel.ends_with("-py3-none-any.whl"), "{p:?}");
        assert!(
            p.sha256.len() == 64 && p.sha256.chars().all(|c| c.is_ascii_hexdigit()),
            "{p:?}"
        );
        assert_eq!(p.license, "BSD License");
    }
    // The runner has them, with their submodules, and the sandbox is still the sandbox.
    let runner = compiling(|| {
        Runner::load(
            &manifest,
            &manifest.runner,
            Registry::load(&manifest, options()).unwrap(),
        )
        .unwrap()
    });
    let mut s = runner.session().await.unwrap();
    let o = cell(
        &mut s,
        "import sympy, mpmath\n\
         x = sympy.Symbol('x')\n\
         (sympy.solve('x**2-3*x+2'), str(sympy.integrate(x**2, x)), str(mpmath.sqrt(2))[:6])",
    )
    .await;
    assert_eq!(
        o.value.as_deref(),
        Some("([1, 2], 'x**3/3', '1.4142')"),
        "{o:?}"
    );
    // sympy imports ctypes at import time (for `sizeof(c_long)`); it got a stand-in,
    // and using ctypes, or importing it, is the sandbox's message.
    let o = cell(
        &mut s,
        "import sympy.printing.llvmjitcode as j\nj.ctypes.CDLL('libc.so')",
    )
    .await;
    let refused = "module `ctypes` is not available in the witbox sandbox: it runs no native code";
    assert_eq!(error_of(&o), ("ModuleNotFoundError", refused));
    assert_import_refused(&mut s, "ctypes", "it runs no native code").await;
    let o = cell(&mut s, "import numpy").await;
    assert!(
        o.error.unwrap().traceback.ends_with(
            "The witbox sandbox has the standard library and the packages isympy, mpmath, sympy; add one \
             to `[runner] packages` in the manifest.\n"
        )
    );
    // A second build is a no-op: the lock and the runner are up to date.
    let again = build(
        &manifest,
        BuildOptions {
            locked: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(again.up_to_date && !again.wrote_lock);
    assert_eq!(again.path, built.path);

    // The lock is reproducible: resolving again gives the same file.
    let (other, other_manifest) = manifest_with("pkg-sympy-again", r#"["sympy==1.14.0"]"#);
    build(&other_manifest, BuildOptions::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(other.path().join("witbox.lock")).unwrap(),
        std::fs::read_to_string(dir.path().join("witbox.lock")).unwrap()
    );

    // A tampered lock fails the build: pip checks every wheel against it.
    let text = std::fs::read_to_string(dir.path().join("witbox.lock")).unwrap();
    let sympy = &lock.packages[1].sha256;
    std::fs::write(
        other.path().join("witbox.lock"),
        text.replace(sympy.as_str(), &"0".repeat(64)),
    )
    .unwrap();
    let e = error(build(&other_manifest, BuildOptions::default()));
    assert!(
        e.starts_with(
            "a wheel does not match its sha256 in witbox.lock (the lock was edited, or the registry serves different bytes): "
        ) && e.contains("sympy==1.14.0"),
        "{e}"
    );
}

#[test]
fn a_native_wheel_is_refused_with_its_tag() {
    let (_dir, manifest) = manifest_with("pkg-numpy", r#"["numpy==2.3.5"]"#);
    let e = error(build(&manifest, BuildOptions::default()));
    assert!(
        e.starts_with(
            "`numpy` 2.3.5 has no pure-Python wheel: its wheel `numpy-2.3.5-cp314-cp314-manylinux"
        ) && e.contains("is tagged `cp314-cp314-manylinux")
            && e.ends_with(
                "compiled code for this machine, which cannot run in the WebAssembly sandbox; \
                 the witbox sandbox takes only pure-Python wheels (tagged `py3-none-any`)"
            ),
        "{e}"
    );
    assert!(!_dir.path().join("witbox.lock").exists());
}

#[test]
fn what_pip_cannot_resolve_safely_is_refused() {
    let (_dir, manifest) = manifest_with("pkg-url", r#"["evil @ https://example.com/evil.whl"]"#);
    assert_eq!(
        error(build(&manifest, BuildOptions::default())),
        "package `evil @ https://example.com/evil.whl` is not a requirement pip can resolve from \
         the registry: give a name and version (`sympy==1.14.0`); options, URLs and paths are not accepted"
    );
    let (_dir, manifest) = manifest_with("pkg-locked", r#"["six==1.17.0"]"#);
    assert_eq!(
        error(build(
            &manifest,
            BuildOptions {
                locked: true,
                ..Default::default()
            }
        )),
        format!(
            "`{}` is missing and `--locked` forbids writing it: run `witbox runner build` without `--locked`",
            _dir.path().join("witbox.lock").display()
        )
    );
}
