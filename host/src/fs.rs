//! Granted folders stay closed: the guest's `wasi:filesystem` is wasmtime-wasi's,
//! with the calls that could make a grant reach outside itself, or grow past its
//! `quota-mb`, checked first. Everything else is passed through unchanged.
//!
//! cap-std keeps every path a guest opens inside its grant, but it writes a
//! symlink's target as given, so without this a guest with an `rw` grant could
//! leave `data/evil -> /etc/passwd` (or `-> ../../x`) for whoever on the host
//! opens the folder next. The rules (each refusal is WASI's `not-permitted`):
//!
//! - A symlink's target must be relative and have no `..` component. A rule that
//!   lets `..` stay "inside" lexically is not enough: links compose (`d/up -> ..`
//!   is inside, and so is `d/l -> up/..` read lexically, yet `d/l` really names
//!   the grant's parent), and a rename or a hard link moves a link to a shallower
//!   folder (`a/b/l -> ../x` moved to `l`). A `..`-free target only ever descends
//!   from wherever its link is, so every link the guest makes stays inside, also
//!   through other links, renames and hard links.
//! - A hard link stays within one grant; hard-linking or renaming a symlink
//!   (one the host made) whose target breaks the rule above is refused.
//!   wasmtime-wasi already refuses links and renames out of a read-only grant.
//! - A rename into a grant with a quota must come from that grant (it would add
//!   bytes nothing counted).
//!
//! `quota-mb` is counted in [`quota`].

mod quota;

use quota::{Quota, QuotaStream};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, Filesize, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{FsError, FsResult};
use wasmtime_wasi::runtime::spawn_blocking;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

/// The grants of one policy, in `dirs` order (which is the order of the preopens).
pub(crate) struct Grants(Vec<Option<Arc<Quota>>>);

impl Grants {
    /// `dirs`: each granted host folder and its quota in bytes, if it has one.
    pub(crate) fn new(dirs: impl IntoIterator<Item = (PathBuf, Option<u64>)>) -> Arc<Self> {
        let quota = |(root, limit): (PathBuf, Option<u64>)| limit.map(|l| Quota::new(root, l));
        Arc::new(Self(dirs.into_iter().map(quota).collect()))
    }

    /// These grants and one more after them (the next preopen): a session's
    /// scratch folder with its cap.
    pub(crate) fn and(&self, root: PathBuf, limit: u64) -> Arc<Self> {
        let mut grants = self.0.clone();
        grants.push(Some(Quota::new(root, limit)));
        Arc::new(Self(grants))
    }

    /// The filesystem state of a new store. Each quota'd folder is measured again,
    /// so what the host changed in it since the last store counts.
    pub(crate) fn for_store(self: &Arc<Self>) -> anyhow::Result<Tracker> {
        for q in self.0.iter().flatten() {
            q.measure_again()?;
        }
        Ok(Tracker {
            grants: self.clone(),
            owner: HashMap::new(),
        })
    }
}

/// Per store: which grant each open descriptor was reached through.
pub(crate) struct Tracker {
    grants: Arc<Grants>,
    /// Descriptor handle (its table slot) -> index of its grant.
    owner: HashMap<u32, usize>,
}

/// Whether a symlink with this target stays inside any folder it is put in:
/// relative, and never going up.
pub(crate) fn stays_inside(target: &str) -> bool {
    Path::new(target)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn refused<T>() -> FsResult<T> {
    Err(ErrorCode::NotPermitted.into())
}

/// A store's data that can give the guarded filesystem its view (`wasi.rs` links
/// `wasi:filesystem` through it).
pub(crate) trait FsView: Send {
    /// wasmtime-wasi's filesystem view with this store's [`Tracker`].
    fn guarded_fs(&mut self) -> GuardedFs<'_>;
}

/// The `HasData` of the guarded `wasi:filesystem`, for `add_to_linker`.
pub(crate) struct Guarded;

impl HasData for Guarded {
    type Data<'a> = GuardedFs<'a>;
}

/// wasmtime-wasi's filesystem view and this store's [`Tracker`].
pub(crate) struct GuardedFs<'a> {
    pub(crate) fs: WasiFilesystemCtxView<'a>,
    pub(crate) tracker: &'a mut Tracker,
}

impl GuardedFs<'_> {
    fn grant(&self, fd: &Resource<Descriptor>) -> Option<usize> {
        self.tracker.owner.get(&fd.rep()).copied()
    }

    fn quota(&self, fd: &Resource<Descriptor>) -> Option<Arc<Quota>> {
        let grant = self.grant(fd)?;
        self.tracker.grants.0.get(grant)?.clone()
    }

    /// The file behind `fd`, refused as wasmtime-wasi refuses writes to it.
    fn writable(&self, fd: &Resource<Descriptor>) -> FsResult<Arc<File>> {
        match self.fs.table.get(fd)? {
            Descriptor::File(f) if f.perms.write_not_permitted() => refused(),
            Descriptor::File(f) => Ok(f.file.clone()),
            Descriptor::Dir(_) => Err(ErrorCode::BadDescriptor.into()),
        }
    }

    /// Refuses to move (rename, hard-link) a symlink whose target breaks the rule.
    async fn check_moved(&mut self, fd: &Resource<Descriptor>, path: &str) -> FsResult<()> {
        let at = || Resource::new_borrow(fd.rep());
        let stat =
            HostDescriptor::stat_at(&mut self.fs, at(), types::PathFlags::empty(), path.into())
                .await;
        if matches!(stat, Ok(s) if matches!(s.type_, types::DescriptorType::SymbolicLink)) {
            let target = HostDescriptor::readlink_at(&mut self.fs, at(), path.into()).await;
            if !target.is_ok_and(|t| stays_inside(&t)) {
                return refused();
            }
        }
        Ok(())
    }
}

impl preopens::Host for GuardedFs<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let dirs = preopens::Host::get_directories(&mut self.fs)?;
        for (grant, (fd, _)) in dirs.iter().enumerate() {
            self.tracker.owner.insert(fd.rep(), grant);
        }
        Ok(dirs)
    }
}

impl types::Host for GuardedFs<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl HostDirectoryEntryStream for GuardedFs<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.fs, stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}

/// Methods passed straight to wasmtime-wasi.
macro_rules! delegate {
    ($(async fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {$(
        async fn $name(&mut self $(, $arg: $ty)*) -> $ret {
            HostDescriptor::$name(&mut self.fs $(, $arg)*).await
        }
    )*};
}

type Fd = Resource<Descriptor>;

impl HostDescriptor for GuardedFs<'_> {
    delegate! {
        async fn advise(&mut self, fd: Fd, offset: Filesize, len: Filesize, advice: types::Advice) -> FsResult<()>;
        async fn sync_data(&mut self, fd: Fd) -> FsResult<()>;
        async fn get_flags(&mut self, fd: Fd) -> FsResult<types::DescriptorFlags>;
        async fn get_type(&mut self, fd: Fd) -> FsResult<types::DescriptorType>;
        async fn set_times(&mut self, fd: Fd, atim: types::NewTimestamp, mtim: types::NewTimestamp) -> FsResult<()>;
        async fn read(&mut self, fd: Fd, len: Filesize, offset: Filesize) -> FsResult<(Vec<u8>, bool)>;
        async fn read_directory(&mut self, fd: Fd) -> FsResult<Resource<types::DirectoryEntryStream>>;
        async fn sync(&mut self, fd: Fd) -> FsResult<()>;
        async fn create_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()>;
        async fn stat(&mut self, fd: Fd) -> FsResult<types::DescriptorStat>;
        async fn stat_at(&mut self, fd: Fd, flags: types::PathFlags, path: String) -> FsResult<types::DescriptorStat>;
        async fn set_times_at(&mut self, fd: Fd, flags: types::PathFlags, path: String, atim: types::NewTimestamp, mtim: types::NewTimestamp) -> FsResult<()>;
        async fn readlink_at(&mut self, fd: Fd, path: String) -> FsResult<String>;
        async fn remove_directory_at(&mut self, fd: Fd, path: String) -> FsResult<()>;
        async fn is_same_object(&mut self, a: Fd, b: Fd) -> wasmtime::Result<bool>;
        async fn metadata_hash(&mut self, fd: Fd) -> FsResult<types::MetadataHashValue>;
        async fn metadata_hash_at(&mut self, fd: Fd, flags: types::PathFlags, path: String) -> FsResult<types::MetadataHashValue>;
    }

    fn read_via_stream(&mut self, fd: Fd, offset: Filesize) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.fs, fd, offset)
    }

    async fn open_at(
        &mut self,
        fd: Fd,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Fd> {
        let grant = self.grant(&fd);
        let quota = self.quota(&fd);
        let opened =
            HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags).await?;
        if let Some(grant) = grant {
            self.tracker.owner.insert(opened.rep(), grant);
        }
        if let Some(q) = quota {
            if oflags.contains(types::OpenFlags::TRUNCATE) {
                q.freed();
            }
            if let Descriptor::File(f) = self.fs.table.get(&opened)? {
                q.opened(&f.file);
            }
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Fd) -> wasmtime::Result<()> {
        self.tracker.owner.remove(&fd.rep());
        HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn symlink_at(&mut self, fd: Fd, old_path: String, new_path: String) -> FsResult<()> {
        // `old-path` is the target, written into the link as given.
        if !stays_inside(&old_path) {
            return refused();
        }
        HostDescriptor::symlink_at(&mut self.fs, fd, old_path, new_path).await
    }

    async fn link_at(
        &mut self,
        fd: Fd,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        let grant = self.grant(&fd);
        if grant.is_none() || grant != self.grant(&new_fd) {
            return refused();
        }
        self.check_moved(&fd, &old_path).await?;
        HostDescriptor::link_at(&mut self.fs, fd, old_path_flags, old_path, new_fd, new_path).await
    }

    async fn rename_at(
        &mut self,
        fd: Fd,
        old_path: String,
        new_fd: Fd,
        new_path: String,
    ) -> FsResult<()> {
        let (from, to) = (self.quota(&fd), self.quota(&new_fd));
        if to.is_some() && self.grant(&fd) != self.grant(&new_fd) {
            return refused();
        }
        self.check_moved(&fd, &old_path).await?;
        HostDescriptor::rename_at(&mut self.fs, fd, old_path, new_fd, new_path).await?;
        // Moved out, or over a file that is now gone.
        from.into_iter().chain(to).for_each(|q| q.freed());
        Ok(())
    }

    async fn unlink_file_at(&mut self, fd: Fd, path: String) -> FsResult<()> {
        let quota = self.quota(&fd);
        HostDescriptor::unlink_file_at(&mut self.fs, fd, path).await?;
        if let Some(q) = quota {
            q.freed();
        }
        Ok(())
    }

    async fn write(&mut self, fd: Fd, buf: Vec<u8>, offset: Filesize) -> FsResult<Filesize> {
        let Some(quota) = self.quota(&fd) else {
            return HostDescriptor::write(&mut self.fs, fd, buf, offset).await;
        };
        let file = self.writable(&fd)?;
        // As a full disk does: what fits is written, then `insufficient-space`.
        let written = spawn_blocking(move || {
            quota.write(&file, Some(offset), buf.len() as u64, false, |_, n| {
                file.write_at(&buf[..n as usize], offset)
            })
        })
        .await?;
        Ok(written as Filesize)
    }

    async fn set_size(&mut self, fd: Fd, size: Filesize) -> FsResult<()> {
        let Some(quota) = self.quota(&fd) else {
            return HostDescriptor::set_size(&mut self.fs, fd, size).await;
        };
        let file = self.writable(&fd)?;
        spawn_blocking(move || quota.set_len(&file, size)).await?;
        Ok(())
    }

    fn write_via_stream(
        &mut self,
        fd: Fd,
        offset: Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        self.quota_stream(fd, Some(offset))
    }

    fn append_via_stream(&mut self, fd: Fd) -> FsResult<Resource<DynOutputStream>> {
        self.quota_stream(fd, None)
    }
}

impl GuardedFs<'_> {
    /// wasmtime-wasi's stream, or for a quota'd grant a [`QuotaStream`] at `at`
    /// (`None`: appending).
    fn quota_stream(&mut self, fd: Fd, at: Option<u64>) -> FsResult<Resource<DynOutputStream>> {
        let Some(quota) = self.quota(&fd) else {
            return match at {
                Some(offset) => HostDescriptor::write_via_stream(&mut self.fs, fd, offset),
                None => HostDescriptor::append_via_stream(&mut self.fs, fd),
            };
        };
        let stream = QuotaStream::boxed(self.writable(&fd)?, at, quota);
        Ok(self.fs.table.push(stream)?)
    }
}

#[cfg(test)]
mod tests {
    use super::stays_inside;

    #[test]
    fn only_relative_targets_that_never_go_up_stay_inside() {
        for ok in ["x", "a/b", "./a", "a/./b", "a//b", "..x", "x.."] {
            assert!(stays_inside(ok), "{ok}");
        }
        for bad in ["/etc/passwd", "/", "..", "../x", "a/../b", "a/..", "//x"] {
            assert!(!stays_inside(bad), "{bad}");
        }
    }
}
