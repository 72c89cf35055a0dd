// Run me with: cargo xtask build && cargo run -p witbox --example agent -- "solve x^2 + 3x + 2 = 0"
// With a real model:  WITBOX_MODEL=gpt-4o-mini OPENAI_API_KEY=... cargo run -p witbox --example agent -- "..."
// In code mode:       WITBOX_MODE=code cargo run -p witbox --example agent -- "what is the sum of the squares of 1..100?"
//
// The agent loop from the library: load the manifest, pick a model (the offline
// planner unless WITBOX_MODEL names one), and run one task, printing each event.

use anyhow::Result;
use std::sync::Arc;
use witbox::agent::{Event, Limits, Mode, Model, Offline, OpenAi};
use witbox::{Agent, EngineOptions, Manifest};

#[tokio::main]
async fn main() -> Result<()> {
    let task = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let task = if task.is_empty() {
        "solve x^2 + 3x + 2 = 0".to_string()
    } else {
        task
    };
    let mode: Mode = std::env::var("WITBOX_MODE")
        .unwrap_or("tools".into())
        .parse()?;

    let model: Arc<dyn Model> = match std::env::var("WITBOX_MODEL") {
        Ok(name) if name != "offline" => {
            let base = std::env::var("OPENAI_BASE_URL").unwrap_or(OpenAi::DEFAULT_BASE_URL.into());
            Arc::new(OpenAi::new(
                &base,
                &name,
                std::env::var("OPENAI_API_KEY").ok(),
            )?)
        }
        _ => Arc::new(Offline),
    };
    let manifest = Manifest::load("witbox.toml".as_ref())?;
    let options = EngineOptions {
        cache_dir: witbox::engine::default_cache_dir(),
        ..Default::default()
    };
    // Every tool of the manifest; in code mode the Python session may call them all.
    let agent = Agent::from_manifest(&manifest, options, model, mode, &[], Limits::default())?;

    let answer = agent
        .run(&task, &mut |event| match event {
            Event::ToolCall {
                name, arguments, ..
            } => println!("→ {name} {arguments}"),
            Event::Code { code, .. } => println!("python:\n{code}"),
            Event::Observation { text, .. } => println!("← {}", text.trim_end()),
            _ => {}
        })
        .await?;
    println!("answer: {}", answer.text);
    Ok(())
}
