//! `cargo xtask fuzz` and the smoke run of `cargo xtask test`: the cargo-fuzz targets in `fuzz/`.

use crate::build::{GUESTS, Kind};
use crate::pins::CARGO_FUZZ;
use crate::toolchain;
use crate::{artifacts, output, root, run, step};

/// The fuzz targets in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: [&str; 3] = ["json_value", "manifest", "load"];

/// Where a fuzz run keeps its inputs.
#[derive(Clone, Copy, PartialEq)]
enum Corpus {
    /// `fuzz/corpus/TARGET/`, kept between runs.
    Kept,
    /// A fresh folder per run, so the smoke run in `cargo xtask test` takes the
    /// same time on every machine, whatever a long run left in the kept corpus.
    Smoke,
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`.
pub fn fuzz(extra: &[String]) -> Result<(), String> {
    let targets: Vec<&str> = match extra.first().map(String::as_str) {
        Some(t) if FUZZ_TARGETS.contains(&t) => vec![t],
        Some(t) if t.parse::<u64>().is_err() => {
            return Err(format!(
                "unknown fuzz target `{t}` (targets: {})",
                FUZZ_TARGETS.join(", ")
            ));
        }
        _ => FUZZ_TARGETS.to_vec(),
    };
    let seconds = extra.iter().find_map(|a| a.parse().ok()).unwrap_or(600);
    fuzz_run(&targets, seconds, Corpus::Kept)
}

/// Every target for 18 s, from a fresh corpus.
pub fn smoke() -> Result<(), String> {
    fuzz_run(&FUZZ_TARGETS, 18, Corpus::Smoke)
}

/// Builds the fuzz targets (optimised, no sanitizer: the host is safe Rust, and
/// what is looked for is panics, aborts, timeouts and memory blow-ups, which need
/// none; that is also why the stable toolchain will do) and runs each for
/// `seconds`. The `load` target is seeded with the real guests, and every target
/// replays `fuzz/regressions/TARGET/` (minimised crashers) first. Crashes land in
/// `fuzz/artifacts/TARGET/`.
fn fuzz_run(targets: &[&str], seconds: u64, corpus: Corpus) -> Result<(), String> {
    let root = root();
    let have = output(toolchain::cargo().args(["fuzz", "--version"])).unwrap_or_default();
    if !have.contains(CARGO_FUZZ) {
        step(&format!("installing cargo-fuzz {CARGO_FUZZ}"));
        run(toolchain::cargo().args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ,
        ]))?;
    }
    let fuzz = root.join("fuzz");
    step("building the fuzz targets");
    run(toolchain::cargo()
        .current_dir(&fuzz)
        .args(["fuzz", "build", "-s", "none", "-O"]))?;
    for target in targets {
        let dir = match corpus {
            Corpus::Kept => fuzz.join("corpus").join(target),
            Corpus::Smoke => fuzz.join("target/smoke").join(target),
        };
        if corpus == Corpus::Smoke {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if *target == "load" {
            // The Rust guests only: a componentize-py component is about 19 MB and
            // takes Cranelift about 12 s, so its mutations would spend the run compiling.
            for guest in GUESTS.iter().filter(|g| g.kind == Kind::Rust) {
                let file = format!("{}.wasm", guest.name);
                let _ = std::fs::copy(artifacts().join(&file), dir.join(&file));
            }
        }
        step(&format!("fuzzing `{target}` for {seconds} s"));
        let regressions = fuzz.join("regressions").join(target);
        let mut cmd = toolchain::cargo();
        cmd.current_dir(&fuzz)
            .args(["fuzz", "run", "-s", "none", "-O", target])
            .arg(&dir)
            .args(regressions.is_dir().then_some(&regressions))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096",
                "-timeout=30",
                "-print_final_stats=1",
            ]);
        if corpus == Corpus::Kept {
            run(&mut cmd)?;
            continue;
        }
        // The smoke run keeps libFuzzer's progress lines in a log and shows its totals.
        let log = fuzz.join("target/smoke").join(format!("{target}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let result = run(cmd.stderr(file));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if let Err(e) = result {
            eprintln!("{}", lines[lines.len().saturating_sub(40)..].join("\n"));
            return Err(format!("{e} (the whole log: {})", log.display()));
        }
        for line in lines {
            if line.starts_with("Done ") || line.starts_with("stat::") {
                println!("{line}");
            }
        }
    }
    Ok(())
}
