//! The compile cache stays within its size: a write past it removes the
//! compiled components used longest ago, and a load counts as a use.

use crate::support::*;
use witbox::{EngineOptions, Manifest, Registry};

fn compiled(dir: &TempDir) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".cwasm").map(str::to_string)
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_cache_keeps_what_was_used_last_within_its_size() {
    let dir = TempDir::new("cache-prune");
    let options = EngineOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        // quadratic, testkit and weather compile to about 0.17, 0.46 and 0.75 MB:
        // any two fit, not the three.
        cache_max_bytes: 1_300_000,
        ..Default::default()
    };
    let load = |guest_name: &str| {
        let manifest = Manifest::parse(&entry(guest_name, guest_name, ""), &root()).unwrap();
        Registry::load(&manifest, options.clone()).unwrap();
        compiled(&dir)
    };
    let quadratic = load("quadratic");
    assert_eq!(quadratic.len(), 1);
    let testkit: Vec<String> = load("testkit")
        .into_iter()
        .filter(|k| !quadratic.contains(k))
        .collect();
    assert_eq!(testkit.len(), 1);
    let weather: Vec<String> = load("weather")
        .into_iter()
        .filter(|k| !quadratic.contains(k) && !testkit.contains(k))
        .collect();
    assert_eq!(weather.len(), 1);
    let (q, t, w) = (&quadratic[0], &testkit[0], &weather[0]);
    // The third went past the size: the one written first is gone, with its index entry.
    let mut both = vec![t.clone(), w.clone()];
    both.sort();
    assert_eq!(compiled(&dir), both);
    let index: Vec<String> = std::fs::read_dir(dir.path().join("by-file"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert!(!index.contains(q), "{index:?}");
    assert_eq!(index.len(), 2, "{index:?}");

    // A load is a use: testkit, loaded again, outlives weather, written after it.
    load("testkit");
    load("quadratic");
    let mut kept = vec![q.clone(), t.clone()];
    kept.sort();
    assert_eq!(compiled(&dir), kept);
}

#[test]
fn a_bad_cache_size_is_a_clear_error() {
    let dir = TempDir::new("cache-size");
    let manifest = dir.write("witbox.toml", entry("quadratic", "quadratic", ""));
    let out = witbox_command(&manifest)
        .arg("tools")
        .env("WITBOX_CACHE_MAX_MB", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid WITBOX_CACHE_MAX_MB `lots`: give the most MiB the compile cache may keep, for example 4096\n"
    );
}
