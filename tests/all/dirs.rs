//! Granted folders stay closed: no symlink or hard link out of a grant, and
//! `quota-mb` caps what a guest adds to an `rw` grant.

use crate::support::*;
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use witbox::{ErrorKind, Registry};

const DENIED: &str = "Operation not permitted (os error 63)";
const FULL: &str = "No space left on device (os error 51)";
const IO: &str = "I/O error (os error 29)";
const MIB: u64 = 1 << 20;

/// The testkit with `dirs` (the items of the TOML array), relative to `dir`.
fn testkit(dir: &TempDir, dirs: &str) -> Arc<Registry> {
    let manifest = format!(
        "{}[component.policy]\ndirs = [{dirs}]\n",
        entry("testkit", "testkit", "")
    );
    let manifest = witbox::Manifest::parse(&manifest, dir.path()).unwrap();
    Registry::load(&manifest, options()).unwrap()
}

/// A tool's value, or the error text the guest gave back.
async fn call(r: &Arc<Registry>, tool: &str, args: Value) -> Result<Value, String> {
    r.call(tool, &args).await.map_err(|e| {
        assert_eq!(e.kind, ErrorKind::ToolError, "{e:?}");
        e.detail.and_then(|d| d.as_str().map(String::from)).unwrap()
    })
}

async fn symlink(r: &Arc<Registry>, target: &str, link: &str) -> Result<Value, String> {
    call(
        r,
        "testkit_symlink",
        json!({"target": target, "link": link}),
    )
    .await
}

async fn hard_link(r: &Arc<Registry>, from: &str, to: &str) -> Result<Value, String> {
    call(
        r,
        "testkit_hard_link",
        json!({"existing": from, "link": to}),
    )
    .await
}

async fn write(r: &Arc<Registry>, path: &str, bytes: u64, how: &str) -> Result<Value, String> {
    let args = json!({"path": path, "bytes": bytes, "how": how});
    call(r, "testkit_write_file", args).await
}

/// The bytes of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn a_symlink_out_of_an_rw_grant_is_refused_and_nothing_is_made() {
    let dir = TempDir::new("fs-symlink-out");
    std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
    let r = testkit(&dir, r#"{ host = "data", guest = "/data", mode = "rw" }"#);
    let cases = [
        ("/etc/passwd", "/data/evil"),
        ("/data/sub", "/data/absolute"),
        ("..", "/data/up"),
        ("../../x", "/data/sub/up"),
        ("sub/../../x", "/data/down-up"),
        // Inside when read lexically, but `..` is never allowed: links compose
        // (`sub/up -> ..` and `l -> sub/up/..`) and move (see the module docs).
        ("../x", "/data/sub/inside"),
        ("sub/..", "/data/here"),
    ];
    for (target, link) in cases {
        assert_eq!(
            symlink(&r, target, link).await,
            Err(DENIED.into()),
            "{target}"
        );
        let on_host = dir.path().join(link.trim_start_matches('/'));
        assert!(on_host.symlink_metadata().is_err(), "{link} was made");
    }
}

#[tokio::test]
async fn a_symlink_within_the_grant_works() {
    let dir = TempDir::new("fs-symlink-in");
    std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
    std::fs::write(dir.path().join("data/sub/hello.txt"), "hi there").unwrap();
    let r = testkit(&dir, r#"{ host = "data", guest = "/data", mode = "rw" }"#);
    assert_eq!(
        symlink(&r, "sub/hello.txt", "/data/link").await,
        Ok(json!(null))
    );
    assert_eq!(symlink(&r, "./sub", "/data/s").await, Ok(json!(null)));
    assert_eq!(
        std::fs::read_link(dir.path().join("data/link")).unwrap(),
        Path::new("sub/hello.txt")
    );
    for path in ["/data/link", "/data/s/hello.txt"] {
        assert_eq!(
            call(&r, "testkit_read_file", json!({"path": path})).await,
            Ok(json!("hi there"))
        );
    }
}

#[tokio::test]
async fn a_read_only_grant_makes_no_links() {
    let dir = TempDir::new("fs-symlink-ro");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/f"), "f").unwrap();
    let r = testkit(&dir, r#"{ host = "data", guest = "/data" }"#);
    assert_eq!(symlink(&r, "f", "/data/l").await, Err(DENIED.into()));
    assert_eq!(
        hard_link(&r, "/data/f", "/data/g").await,
        Err(DENIED.into())
    );
    assert!(dir.path().join("data/l").symlink_metadata().is_err());
    assert!(!dir.path().join("data/g").exists());
}

#[tokio::test]
async fn hard_links_stay_within_one_grant() {
    let dir = TempDir::new("fs-hard-link");
    for d in ["a/sub", "b", "r"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("a/f"), "a").unwrap();
    std::fs::write(dir.path().join("r/g"), "r").unwrap();
    // Made by the host, not the guest: its target leaves `a/` from `a/`.
    std::os::unix::fs::symlink("../f", dir.path().join("a/sub/up")).unwrap();
    let r = testkit(
        &dir,
        r#"{ host = "a", guest = "/a", mode = "rw" },
           { host = "b", guest = "/b", mode = "rw" },
           { host = "r", guest = "/r" }"#,
    );
    let cases = [
        ("/a/f", "/b/f", "b/f"),
        ("/r/g", "/a/g", "a/g"),
        ("/a/f", "/r/f", "r/f"),
        ("/a/sub/up", "/a/up", "a/up"),
    ];
    for (from, to, on_host) in cases {
        assert_eq!(hard_link(&r, from, to).await, Err(DENIED.into()), "{from}");
        assert!(dir.path().join(on_host).symlink_metadata().is_err());
    }
    assert_eq!(hard_link(&r, "/a/f", "/a/sub/f").await, Ok(json!(null)));
    let ino = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap().ino();
    assert_eq!(ino("a/sub/f"), ino("a/f"));
}

#[tokio::test]
async fn renames_cannot_carry_bytes_or_links_out() {
    let dir = TempDir::new("fs-rename");
    for d in ["q/sub", "free"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    std::fs::write(dir.path().join("free/big"), vec![0u8; 4096]).unwrap();
    std::fs::write(dir.path().join("q/f"), "q").unwrap();
    std::os::unix::fs::symlink("../f", dir.path().join("q/sub/up")).unwrap();
    let r = testkit(
        &dir,
        r#"{ host = "q", guest = "/q", mode = "rw", quota-mb = 1 },
           { host = "free", guest = "/free", mode = "rw" }"#,
    );
    let rename = |from: &'static str, to: &'static str| {
        let r = r.clone();
        async move {
            call(
                &r,
                "testkit_rename",
                json!({"existing": from, "new-name": to}),
            )
            .await
        }
    };
    // Into the quota'd grant from another one: bytes nothing counted.
    assert_eq!(rename("/free/big", "/q/big").await, Err(DENIED.into()));
    assert!(dir.path().join("free/big").exists());
    // A symlink (made by the host) whose target would leave the grant once moved up.
    assert_eq!(rename("/q/sub/up", "/q/up").await, Err(DENIED.into()));
    assert!(dir.path().join("q/sub/up").symlink_metadata().is_ok());
    // Within a grant, and out of the quota'd one, renames work.
    assert_eq!(rename("/q/f", "/q/sub/g").await, Ok(json!(null)));
    assert_eq!(rename("/q/sub/g", "/free/g").await, Ok(json!(null)));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("free/g")).unwrap(),
        "q"
    );
}

#[tokio::test]
async fn without_a_grant_there_is_nothing_to_link_or_write() {
    let r = registry("testkit", "");
    let none = "No such file or directory (os error 44)";
    assert_eq!(symlink(&r, "x", "/data/l").await, Err(none.into()));
    assert_eq!(hard_link(&r, "/data/a", "/data/b").await, Err(none.into()));
    for how in ["create", "append", "grow"] {
        assert_eq!(
            write(&r, "/data/a", 1, how).await,
            Err(none.into()),
            "{how}"
        );
    }
    assert_eq!(
        write(&r, "/data/a", 1, "at-end").await,
        Err("no preopen holds the path".into())
    );
}

#[test]
fn a_quota_on_a_read_only_grant_is_a_load_error() {
    for mode in ["", ", mode = \"ro\""] {
        let text = format!(
            "[[component]]\nname = \"t\"\npath = \"t.wasm\"\n[component.policy]\n\
             dirs = [{{ host = \"d\", guest = \"/d\", quota-mb = 1{mode} }}]\n"
        );
        let e = witbox::Manifest::parse(&text, &root()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "component `t`: the dir `/d` has a `quota-mb` but is read only: a quota needs `mode = \"rw\"`"
        );
    }
}

fn quota_of_one_mib(label: &str) -> (TempDir, Arc<Registry>) {
    let dir = TempDir::new(label);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let r = testkit(
        &dir,
        r#"{ host = "data", guest = "/data", mode = "rw", quota-mb = 1 }"#,
    );
    (dir, r)
}

#[tokio::test]
async fn each_way_of_writing_works_within_the_quota_and_stops_at_it() {
    // Stream writes fill the quota exactly and then fail; wasi-libc (under Rust's
    // std and CPython) reports every failed stream write as `EIO`, a guest that asks
    // `filesystem-error-code` gets `insufficient-space`. A positioned write writes
    // what fits; `set-size` growth is all or nothing.
    let ways = [
        ("create", IO, MIB),
        ("append", IO, MIB),
        ("at-end", "insufficient-space", MIB),
        ("stream-at-end", "insufficient-space", MIB),
        ("grow", FULL, MIB - 60),
    ];
    for (how, error, after) in ways {
        let (dir, r) = quota_of_one_mib("fs-quota-ways");
        let data = dir.path().join("data");
        std::fs::write(data.join("host"), vec![0u8; (MIB - 100) as usize]).unwrap();
        assert_eq!(write(&r, "/data/a", 40, how).await, Ok(json!(40)), "{how}");
        assert_eq!(
            write(&r, "/data/b", 100, how).await,
            Err(error.into()),
            "{how}"
        );
        assert_eq!(size_of(&data), after, "{how}");
    }
}

#[tokio::test]
async fn a_write_past_the_quota_leaves_nothing_past_it_on_disk() {
    let (dir, r) = quota_of_one_mib("fs-quota-past");
    let data = dir.path().join("data");
    assert_eq!(
        write(&r, "/data/big", MIB + 1, "create").await,
        Err(IO.into())
    );
    assert_eq!(size_of(&data), MIB);
    assert_eq!(
        write(&r, "/data/more", 1, "at-end").await,
        Err("insufficient-space".into())
    );
    // A sparse file counts its whole length.
    std::fs::remove_file(data.join("big")).unwrap();
    assert_eq!(
        write(&r, "/data/sparse", MIB + 1, "grow").await,
        Err(FULL.into())
    );
    assert_eq!(size_of(&data), 0);
    // Rewriting a full quota's file adds nothing: the truncation gives it back.
    assert_eq!(write(&r, "/data/big", MIB, "create").await, Ok(json!(MIB)));
    assert_eq!(write(&r, "/data/big", MIB, "create").await, Ok(json!(MIB)));
}

#[tokio::test]
async fn what_the_host_put_in_the_folder_counts() {
    let (dir, r) = quota_of_one_mib("fs-quota-host");
    let data = dir.path().join("data");
    std::fs::write(data.join("host"), vec![0u8; (MIB - 10) as usize]).unwrap();
    assert_eq!(
        write(&r, "/data/a", 11, "at-end").await,
        Err("insufficient-space".into())
    );
    assert_eq!(size_of(&data), MIB);
    // Each store measures the folder again.
    std::fs::remove_file(data.join("host")).unwrap();
    assert_eq!(
        write(&r, "/data/b", MIB - 10, "create").await,
        Ok(json!(MIB - 10))
    );
}

#[tokio::test]
async fn a_removed_file_still_open_counts() {
    let (dir, r) = quota_of_one_mib("fs-quota-removed");
    assert_eq!(
        write(&r, "/data/gone", MIB + MIB / 2, "removed").await,
        Err(IO.into())
    );
    assert_eq!(size_of(&dir.path().join("data")), 0);
}

#[tokio::test]
async fn python_sessions_share_the_quota_and_get_it_back_when_they_remove_files() {
    let dir = TempDir::new("fs-quota-python");
    let policy = format!(
        "dirs = [{{ host = {:?}, guest = \"/out\", mode = \"rw\", quota-mb = 1 }}]",
        dir.path()
    );
    let runner = runner(&policy);
    let mut a = runner.session().await.unwrap();
    let mut b = runner.session().await.unwrap();
    let put =
        |name: &str, kib: u64| format!("open('/out/{name}', 'wb').write(b'x' * {kib} * 1024)");
    let o = cell(&mut a, &put("a", 600)).await;
    assert_eq!(o.value.as_deref(), Some("614400"), "{o:?}");
    // `b` was made before `a` wrote, and still sees what `a` added.
    let o = cell(&mut b, &put("b", 600)).await;
    assert_eq!(
        error_of(&o),
        (
            "OSError",
            "[Errno 51] No space left on device (the folder is at its quota: `scratch-mb` for the session's scratch folder, `quota-mb` for a granted one)"
        )
    );
    assert_eq!(size_of(dir.path()), MIB);
    // Removing files gives their bytes back within the same session.
    let code = format!(
        "import os\nos.remove('/out/a')\nos.remove('/out/b')\n{}",
        put("c", 1024)
    );
    let o = cell(&mut a, &code).await;
    assert_eq!(o.value.as_deref(), Some("1048576"), "{o:?}");
    let o = cell(&mut a, "import os\nos.symlink('/etc/passwd', '/out/evil')").await;
    assert_eq!(
        error_of(&o),
        (
            "PermissionError",
            "[Errno 63] Operation not permitted: '/etc/passwd' -> '/out/evil'"
        )
    );
}
