//! Any text as a manifest: parsing and checking every policy either succeed or
//! return an error; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(manifest) = witbox::Manifest::parse(text, Path::new("/nonexistent")) else {
        return;
    };
    for c in &manifest.component {
        let _ = c.policy.check();
        let _ = witbox::policy::Sandbox::new(&c.name, &c.policy, &c.config, &manifest);
    }
    let _ = manifest.runner.policy.check();
});
