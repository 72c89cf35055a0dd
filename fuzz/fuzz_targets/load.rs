//! Any bytes, or a `wasm-smith` module, loaded as a tool: an error or a registry,
//! never a panic. Seeded (by `cargo xtask fuzz`) with the real guests, so the
//! mutations reach the component parser, the WIT decoder and Cranelift.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicUsize, Ordering};

fuzz_target!(|data: &[u8]| {
    let bytes = if data.first() == Some(&0xa5) {
        let mut u = Unstructured::new(&data[1..]);
        match wasm_smith::Module::new(wasm_smith::Config::default(), &mut u) {
            Ok(module) => module.to_bytes(),
            Err(_) => return,
        }
    } else {
        data.to_vec()
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "witbox-fuzz-{}-{}.wasm",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed) % 4
    ));
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    let options = witbox::EngineOptions {
        max_instances: 4,
        ..Default::default()
    };
    let _ = witbox::Registry::check_file(&path, options);
    let _ = std::fs::remove_file(&path);
});
