//! A session's scratch folder (its `/`, cwd and `/tmp`): private, capped, gone
//! when the session closes; files in and out from the host, never outside it.

use crate::support::*;
use std::sync::Arc;
use witbox::{ErrorKind, Manifest, Registry};

/// A runner whose sessions get `scratch` in `[runner]` (e.g. `scratch-mb = 1`).
fn runner_with(scratch: &str) -> Arc<witbox::Runner> {
    compiling(|| {
        let text = runner_manifest("").replace("[runner]\n", &format!("[runner]\n{scratch}\n"));
        let manifest = Manifest::parse(&text, &root()).unwrap();
        let registry = Registry::load(&manifest, options()).unwrap();
        witbox::Runner::load(&manifest, &manifest.runner, registry).unwrap()
    })
}

#[tokio::test]
async fn a_session_writes_files_in_its_working_directory_and_tmp() {
    let mut s = session("").await;
    let o = cell(
        &mut s,
        "import os, tempfile\n\
         open('out.csv', 'w').write('a,b\\n1,2\\n')\n\
         with tempfile.NamedTemporaryFile('w', delete=False, suffix='.txt') as f:\n    f.write('t')\n\
         print(os.getcwd(), sorted(os.listdir('/')), f.name.startswith('/tmp/'))",
    )
    .await;
    assert_eq!(error_of(&o), ("", ""));
    assert_eq!(o.stdout, "/ ['out.csv', 'tmp'] True\n");
    assert_eq!(s.read_file("/out.csv").unwrap(), b"a,b\n1,2\n");
    assert_eq!(s.read_file("out.csv").unwrap(), b"a,b\n1,2\n");
    let listed = s.list_files("/").unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(names, [("out.csv", "file", 8), ("tmp", "dir", 0)]);
    assert_eq!(s.list_files("tmp").unwrap().len(), 1);
}

#[tokio::test]
async fn files_go_in_and_out_binary_safe() {
    let mut s = session("").await;
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, 0xfe]).collect();
    s.write_file("in/data.bin", &bytes).unwrap();
    let o = cell(
        &mut s,
        "b = open('/in/data.bin', 'rb').read()\nopen('/in/rev.bin', 'wb').write(b[::-1])\nlen(b)",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("259"), "{o:?}");
    let mut reversed = bytes.clone();
    reversed.reverse();
    assert_eq!(s.read_file("/in/rev.bin").unwrap(), reversed);
    // Files outlive a restart of the session's instance.
    let o = cell(&mut s, "import time\nwhile True: time.sleep(0)").await;
    assert!(o.session_restarted);
    assert_eq!(s.read_file("/in/rev.bin").unwrap(), reversed);
}

#[tokio::test]
async fn sessions_do_not_see_each_others_files() {
    let runner = runner("");
    let (mut a, mut b) = (
        runner.session().await.unwrap(),
        runner.session().await.unwrap(),
    );
    cell(&mut a, "open('mine.txt', 'w').write('a')").await;
    let o = cell(
        &mut b,
        "import os\nos.listdir('/'), os.path.exists('/mine.txt')",
    )
    .await;
    assert_eq!(o.value.as_deref(), Some("(['tmp'], False)"));
    let e = b.read_file("mine.txt").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::NotFound, "`mine.txt`: no such file or folder")
    );
}

#[tokio::test]
async fn no_path_leaves_the_scratch_folder() {
    let mut s = session("").await;
    for (path, said) in [
        (
            "../x",
            "the path `../x` leaves the session's scratch folder: `..` is not allowed",
        ),
        (
            "/a/../../x",
            "the path `/a/../../x` leaves the session's scratch folder: `..` is not allowed",
        ),
        ("/", "the path `/` names no file"),
        ("a\0b", "the path contains a NUL byte"),
    ] {
        let e = s.write_file(path, b"x").unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::InvalidArguments, said)
        );
        let e = s.read_file(path).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::InvalidArguments, said)
        );
    }
    // A link the guest makes must stay inside (fs.rs), so none points out;
    // one that stays inside is followed.
    let o = cell(
        &mut s,
        "import os\nopen('t.txt', 'w').write('inside')\nos.symlink('t.txt', 'l')\ntry:\n    os.symlink('/etc/passwd', 'out')\nexcept OSError as e:\n    print(e)",
    )
    .await;
    assert_eq!(
        o.stdout,
        "[Errno 63] Operation not permitted: '/etc/passwd' -> 'out'\n"
    );
    assert_eq!(s.read_file("l").unwrap(), b"inside");
    let o = cell(&mut s, "open('/etc/passwd').read()").await;
    assert_eq!(error_of(&o).0, "FileNotFoundError");
}

#[tokio::test]
async fn the_scratch_folder_is_capped() {
    let runner = runner_with("scratch-mb = 1");
    let mut s = runner.session().await.unwrap();
    let o = cell(
        &mut s,
        "import errno\ntry:\n    with open('big', 'wb') as f:\n        f.write(b'x' * (2 << 20))\nexcept OSError as e:\n    print(type(e).__name__, e.errno == errno.ENOSPC, e)\nimport os\nos.path.getsize('big')",
    )
    .await;
    // ENOSPC, as a full disk; nothing past the cap is written.
    assert_eq!(
        o.stdout,
        "OSError True [Errno 51] No space left on device (the folder is at its quota: `scratch-mb` for the session's scratch folder, `quota-mb` for a granted one)\n",
        "{o:?}"
    );
    assert!(
        o.value.as_deref().unwrap().parse::<u64>().unwrap() <= 1 << 20,
        "{o:?}"
    );
    // The session goes on.
    assert_eq!(cell(&mut s, "1 + 1").await.value.as_deref(), Some("2"));
    let e = s.write_file("more", &vec![0; 1 << 20]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Denied);
    assert!(
        e.message.starts_with(
            "writing 1048576 bytes to `more` would take the session's scratch folder past its limit of 1 MiB (`scratch-mb`; "
        ),
        "{}",
        e.message
    );
    let e = s
        .write_file("huge", &vec![0; witbox::python::MAX_FILE_BYTES + 1])
        .unwrap_err();
    assert_eq!(
        e.message,
        format!(
            "the file is {} bytes; `write_file` takes at most {}",
            witbox::python::MAX_FILE_BYTES + 1,
            witbox::python::MAX_FILE_BYTES
        )
    );
}

#[tokio::test]
async fn scratch_mb_0_gives_a_session_no_files() {
    let runner = runner_with("scratch-mb = 0");
    let mut s = runner.session().await.unwrap();
    let o = cell(&mut s, "open('x', 'w')").await;
    assert_eq!(error_of(&o).0, "FileNotFoundError", "{o:?}");
    let e = s.write_file("x", b"1").unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Denied,
            "this session has no files: its runner has `scratch-mb = 0`"
        )
    );
}

#[test]
fn the_cli_puts_files_in_and_removes_the_folder_at_exit() {
    drop(runner(""));
    let dir = TempDir::new("cli-files");
    let m = dir.write("witbox.toml", runner_manifest(""));
    let local = dir.write("numbers.txt", "1\n2\n3\n");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = witbox_command(&m)
        .env("TMPDIR", &tmp)
        .arg("run")
        .arg("--file")
        .arg(&local)
        .arg("--file")
        .arg(format!("{}:/in/n.txt", local.display()))
        .args([
            "-c",
            "sum(map(int, open('numbers.txt'))) + len(open('/in/n.txt').read())",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "12\n");
    // The session's folder went with it.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let missing = witbox_command(&m)
        .args(["run", "--file", "/no/such/file", "-c", "1"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "error: `--file /no/such/file`: failed to open `/no/such/file`: No such file or directory (os error 2)\n"
    );
}
