//! The versions the xtask installs for itself. The guests' toolchain pins
//! (wit-bindgen, componentize-py) are in `host/src/scaffold/toolchain.rs`,
//! shared with `witbox build`.

/// What the MCP tests drive witbox with: the official Python MCP SDK and smolagents.
/// And the Python package's build and tests: maturin, pytest and LangChain's core.
pub const PYTHON_TEST_DEPS: [(&str, &str); 5] = [
    ("mcp", "2.3.0"),
    ("smolagents", "1.26.0"),
    ("maturin", "1.16.0"),
    ("pytest", "8.4.2"),
    ("langchain-core", "1.8.3"),
];

/// cargo-fuzz, for `cargo xtask fuzz` and the smoke run of `cargo xtask test`.
pub const CARGO_FUZZ: &str = "0.13.2";

/// Native numpy for the data runner's baseline row (`cargo xtask bench`), in a
/// clean venv of the system's python3.
pub const BENCH_NUMPY: &str = "2.3.5";

/// pyeryx (eryx's Python binding), the Python bench's peer: installed beside the
/// witbox wheel when the bench's interpreter (`WITBOX_BENCH_PYTHON`, else
/// `python3`) is CPython 3.12 or newer, which its only wheel needs.
pub const BENCH_PYERYX: (&str, &str) = (
    "0.11.0",
    "2730ccbe6a7fb07b2995e52d0163dda670cd340aba0469be09e35fb14a3c22f2",
);
