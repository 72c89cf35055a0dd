//! The demo's manifest, `target/demo/witbox.toml`: the shipped `witbox.toml` with
//! its paths made relative to `target/demo/` and the weather tool pointed at the
//! local fixture server, the only address its policy then allows. Derived rather
//! than written out a second time, so the demo shows the tools the shipped
//! manifest loads, under the same policies. `std` and `toml` only: the tests
//! include this file to check that.

use std::path::Path;
use toml::{Table, Value};

/// The demo's manifest from `shipped`, the text of the repository's `witbox.toml`,
/// with weather reading from and allowed only `fixture` (`http://127.0.0.1:PORT`).
pub fn derive(shipped: &str, fixture: &str) -> Result<String, String> {
    let mut manifest: Table = shipped
        .parse()
        .map_err(|e| format!("invalid witbox.toml: {e}"))?;
    let components = manifest
        .get_mut("component")
        .and_then(Value::as_array_mut)
        .ok_or("witbox.toml has no `[[component]]` list")?;
    let mut weather = false;
    for component in components {
        let component = component
            .as_table_mut()
            .ok_or("a `[[component]]` of witbox.toml is not a table")?;
        rebase(component)?;
        if component.get("name").and_then(Value::as_str) == Some("weather") {
            weather = true;
            let policy = table(component, "policy")?;
            policy.insert("allow-http".into(), Value::Array(vec![fixture.into()]));
            let config = table(component, "config")?;
            for key in ["geocoding-url", "forecast-url"] {
                config.insert(key.into(), fixture.into());
            }
        }
    }
    if !weather {
        return Err("witbox.toml has no `weather` component to point at the fixture".into());
    }
    let runner = table(&mut manifest, "runner")?;
    // The host's default (`manifest::defaults::runner_path`), which is relative
    // to the manifest, so it has to be written out to be rebased.
    runner
        .entry("path")
        .or_insert_with(|| "target/guests/python-runner.wasm".into());
    rebase(runner)?;
    let text = toml::to_string(&manifest).map_err(|e| format!("failed to write TOML: {e}"))?;
    Ok(format!(
        "# Written by `cargo xtask demo`: the shipped witbox.toml, with weather pointed at\n\
         # the local Open-Meteo fixture ({fixture}), the only address it may reach.\n\n{text}"
    ))
}

/// The table under `key`, made empty when missing.
fn table<'a>(parent: &'a mut Table, key: &str) -> Result<&'a mut Table, String> {
    parent
        .entry(key)
        .or_insert_with(|| Value::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| format!("`{key}` in witbox.toml is not a table"))
}

/// Makes the relative paths of a component or runner entry (its `path`, its
/// policy's `dirs`) relative to `target/demo/` instead of the repository.
fn rebase(entry: &mut Table) -> Result<(), String> {
    rebase_path(entry, "path")?;
    let dirs = entry
        .get_mut("policy")
        .and_then(|p| p.get_mut("dirs"))
        .and_then(Value::as_array_mut);
    for dir in dirs.into_iter().flatten() {
        if let Some(dir) = dir.as_table_mut() {
            rebase_path(dir, "host")?;
        }
    }
    Ok(())
}

fn rebase_path(entry: &mut Table, key: &str) -> Result<(), String> {
    let Some(value) = entry.get_mut(key) else {
        return Ok(());
    };
    let path = value
        .as_str()
        .ok_or_else(|| format!("`{key}` in witbox.toml is not a string"))?;
    if Path::new(path).is_relative() {
        *value = format!("../../{path}").into();
    }
    Ok(())
}
