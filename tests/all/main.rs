//! The one integration-test binary (wasmtime links once). Every test runs real
//! components built by `cargo xtask build` into `target/guests/`.

#[path = "../../xtask/src/fixture.rs"]
#[allow(dead_code)]
mod fixture;
mod support;

mod acceptance;
mod agent;
mod audit;
mod bypass;
mod cache;
mod checkpoints;
mod cli;
mod compose;
mod data;
mod dirs;
mod files;
mod fleet;
mod hosted;
mod limits;
mod local_models;
mod malformed;
mod mcp;
mod net;
mod packages;
mod python;
mod quadratic;
mod rest;
mod robust;
mod sandbox;
mod scaffold;
mod schedule;
mod secrets;
mod serve;
mod shipped;
mod snapshots;
mod stdlib;
mod stream;
mod types;
mod weather;
