//! The data runner's rows: fresh sessions (from the warm pool, on demand), the
//! first numpy + pandas cell, a warm cell, a 500×500 matrix multiply against
//! native numpy in the same run, and the memory of live sessions.

use super::{median, memory, root, show, timing};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use witbox::{EngineOptions, Manifest, Registry, Runner};

const MATMUL: &str = "import numpy as np\n\
    a = np.random.default_rng(0).random((500, 500))\n\
    b = np.random.default_rng(1).random((500, 500))";

fn manifest(warm: usize) -> Manifest {
    let text = format!(
        "[runner]\npath = {:?}\n[runner.data]\npath = {:?}\nmax-sessions = 24\nwarm-sessions = {warm}\n[runner.data.policy]\nmemory-mb = 1024\ntimeout-ms = 60000\n",
        root().join("target/guests/python-runner.wasm"),
        root().join("target/guests/data"),
    );
    Manifest::parse(&text, &root()).unwrap()
}

fn load(warm: usize, options: &EngineOptions) -> Arc<Runner> {
    let manifest = manifest(warm);
    let registry = Registry::load(&manifest, options.clone()).unwrap();
    let entry = manifest.runner.data_runner().unwrap();
    Runner::load_data(&manifest, &entry, registry).unwrap()
}

pub fn data(
    options: &EngineOptions,
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<(String, String, String)>,
) {
    if !root()
        .join("target/guests/data/python-snapshot.wasm")
        .exists()
    {
        rows.push((
            "data runner".into(),
            "-".into(),
            "skipped: run `cargo xtask build`".into(),
        ));
        return;
    }
    rt.block_on(async {
        // On demand: a new instance, its driver loaded, a first cell.
        let on_demand = load(0, options);
        let mut fresh = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let mut s = on_demand.session().await.unwrap();
            s.run("print(1+1)").await.unwrap();
            fresh.push(t.elapsed());
        }
        rows.push(timing(
            "data runner: fresh session on demand + `print(1+1)`",
            fresh,
        ));
        drop(on_demand);

        // From the warm pool (its instances have numpy and pandas imported).
        let pooled = load(2, options);
        let mut from_pool = Vec::new();
        let mut first_cell = Vec::new();
        for _ in 0..10 {
            while !pooled.warm_pool_full() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let t = Instant::now();
            let mut s = pooled.session().await.unwrap();
            s.run("print(1+1)").await.unwrap();
            from_pool.push(t.elapsed());
            while !pooled.warm_pool_full() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut s = pooled.session().await.unwrap();
            let t = Instant::now();
            let o = s
                .run("import numpy as np, pandas as pd\npd.DataFrame({'x': np.arange(5)})['x'].sum()")
                .await
                .unwrap();
            first_cell.push(t.elapsed());
            assert_eq!(o.value.as_deref(), Some("np.int64(10)"), "{o:?}");
        }
        rows.push(timing(
            "data runner: fresh session from the warm pool + `print(1+1)`",
            from_pool,
        ));
        rows.push(timing(
            "data runner: first numpy + pandas cell (pooled session)",
            first_cell,
        ));
        // The same cell in a session whose instance imports them itself.
        let cold = load(0, options);
        let mut s = cold.session().await.unwrap();
        let t = Instant::now();
        s.run("import numpy as np, pandas as pd\npd.DataFrame({'x': np.arange(5)})['x'].sum()")
            .await
            .unwrap();
        rows.push((
            "data runner: first numpy + pandas cell (on-demand session)".into(),
            show(t.elapsed()),
            "1 run".into(),
        ));

        let mut s = pooled.session().await.unwrap();
        s.run("x = 1").await.unwrap();
        let mut turns = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            s.run("print(1+1)").await.unwrap();
            turns.push(t.elapsed());
        }
        rows.push(timing("data runner: warm cell `print(1+1)`", turns));

        // CPU-bound numpy: one 500×500 float64 matrix multiply.
        s.run(MATMUL).await.unwrap();
        let mut mm = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let o = s.run("c = a @ b").await.unwrap();
            assert!(o.error.is_none(), "{o:?}");
            mm.push(t.elapsed());
        }
        let native = native_numpy();
        rows.push((
            "data runner: 500×500 matrix multiply (`a @ b`)".into(),
            show(median(mm)),
            match native {
                Some((d, python)) => format!(
                    "median of 10; native numpy, 1 BLAS thread: {} ({})",
                    show(d),
                    python.display()
                ),
                None => "median of 10; native numpy: not installed".into(),
            },
        ));

        // Memory of live sessions: 8 more, each having used numpy and pandas.
        let before = memory();
        let mut live = Vec::new();
        for _ in 0..8 {
            let mut s = on_demand_runner(options).session().await.unwrap();
            s.run("import numpy as np, pandas as pd\ndf = pd.DataFrame({'x': np.arange(1000)})\ndf.x.sum()")
                .await
                .unwrap();
            live.push(s);
        }
        let after = memory();
        rows.push((
            "data runner: memory per live session (numpy + pandas used)".into(),
            format!("{:.1} MiB", (after[1] - before[1]) / 8.0),
            format!(
                "PSS; RSS {:.1} MiB, private {:.1} MiB each, 8 sessions",
                (after[0] - before[0]) / 8.0,
                (after[2] - before[2]) / 8.0
            ),
        ));
        for s in live {
            s.leak();
        }
    });
}

/// One runner for the memory row's sessions (on demand: none kept warm).
fn on_demand_runner(options: &EngineOptions) -> Arc<Runner> {
    static RUNNER: std::sync::OnceLock<Arc<Runner>> = std::sync::OnceLock::new();
    RUNNER.get_or_init(|| load(0, options)).clone()
}

/// Native numpy's `a @ b` (median of 10, in its own process), with the python
/// that ran it: `WITBOX_BENCH_NUMPY` (a clean venv `cargo xtask bench` makes).
fn native_numpy() -> Option<(Duration, PathBuf)> {
    let python = PathBuf::from(std::env::var_os("WITBOX_BENCH_NUMPY")?);
    let script = format!(
        "import time\n{MATMUL}\nts = []\nfor _ in range(10):\n    t = time.perf_counter(); c = a @ b; ts.append(time.perf_counter() - t)\nprint(sorted(ts)[5])"
    );
    // One thread, as the sandbox has.
    let out = Command::new(&python)
        .env("OPENBLAS_NUM_THREADS", "1")
        .env("OMP_NUM_THREADS", "1")
        .args(["-I", "-c", &script])
        .output()
        .ok()?;
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((Duration::from_secs_f64(secs), python))
}
