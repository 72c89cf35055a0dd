// Run me with: cargo xtask build && cargo run -p witbox --example call_tool -- quadratic_solve '{"a":1,"b":-3,"c":2}'
//
// The library in a dozen lines: load the manifest, list the tools a model would
// see, call one with JSON arguments, and print the result or the typed error.

use anyhow::Result;
use witbox::{EngineOptions, Manifest, Registry};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let tool = args.next().unwrap_or_else(|| "quadratic_solve".into());
    let json = args
        .next()
        .unwrap_or_else(|| r#"{"a": 1, "b": -3, "c": 2}"#.into());

    let manifest = Manifest::load("witbox.toml".as_ref())?;
    let options = EngineOptions {
        cache_dir: witbox::engine::default_cache_dir(),
        ..Default::default()
    };
    let registry = Registry::load(&manifest, options)?;
    for t in registry.tools() {
        println!(
            "tool {}: {}",
            t.name,
            t.description.lines().next().unwrap_or("")
        );
    }

    match registry.call(&tool, &serde_json::from_str(&json)?).await {
        Ok(result) => println!("{tool} → {result}"),
        Err(e) => println!("{tool} failed: {}", e.to_json()),
    }
    Ok(())
}
