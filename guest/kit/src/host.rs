//! The host's imports behind a trait, so the operations in [`crate::ops`] run unchanged against the
//! real WIT imports (in wasm) and against an in-memory fake (native tests).

use crate::bindings::exports::session_archiver::policy::policy as api;
pub use crate::bindings::session_archiver::policy::archive_dir::{self, Entry};
pub use crate::bindings::session_archiver::policy::export_sink;
pub use crate::bindings::session_archiver::policy::files::{self, FileStat};
pub use crate::bindings::session_archiver::policy::log::Level;
pub use crate::bindings::session_archiver::policy::members::{
    self, Inflated, InflatedMember, MemberWritten,
};
pub use crate::bindings::session_archiver::policy::objects::{self, Object, Page};

/// An archive being written (the WIT `archive-dir.writer`).
pub trait ArchiveWrite {
    /// Appends a chunk.
    fn write(&self, chunk: &[u8]) -> Result<(), archive_dir::Error>;
    /// Makes it durable and visible.
    fn commit(&self) -> Result<Entry, archive_dir::Error>;
    /// Discards it.
    fn abort(&self);
}

/// An archive being read (the WIT `archive-dir.reader`).
pub trait ArchiveRead {
    /// Reads up to `max` bytes; empty at the end.
    fn read(&self, max: u32) -> Result<Vec<u8>, archive_dir::Error>;
    /// Size when opened.
    fn size(&self) -> u64;
}

/// Members of one archive inflated on the host's helpers, in push order (the WIT
/// `members.inflater`).
pub trait Inflate {
    /// Queues a member; returns the oldest one when the host's window is full.
    fn push(&self, member: &[u8], raw_len: u64) -> Result<Option<Inflated>, archive_dir::Error>;
    /// The oldest queued member; `None` when nothing is queued.
    fn next(&self) -> Result<Option<Inflated>, archive_dir::Error>;
}

/// Every import a policy uses; see the WIT docs for each call's contract.
#[allow(missing_docs)]
pub trait Host {
    type Writer: ArchiveWrite;
    type Reader: ArchiveRead;
    type Inflater: Inflate;

    fn now_ms(&self) -> i64;
    fn log(&self, level: Level, message: &str);

    fn list_objects(&self, after: Option<&str>, limit: u32) -> Result<Page, objects::Error>;
    fn get_object(&self, id: &str) -> Result<Object, objects::Error>;
    fn update_meta(&self, id: &str, patch: &str) -> Result<Object, objects::Error>;
    fn update_meta_if(&self, id: &str, patch: &str, version: u64)
        -> Result<Object, objects::Error>;

    fn stat_file(&self, zone: &str, name: &str) -> Result<Option<FileStat>, files::Error>;
    fn read_file(
        &self,
        zone: &str,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, files::Error>;
    /// Creates an empty file; `circular_max_size` makes it circular.
    fn create_file(
        &self,
        zone: &str,
        name: &str,
        circular_max_size: Option<u64>,
    ) -> Result<FileStat, files::Error>;
    fn append_file(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, files::Error>;
    fn delete_file_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), files::Error>;
    fn delete_file(&self, zone: &str, name: &str) -> Result<(), files::Error>;
    fn rename_file_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), files::Error>;
    fn get_file_meta(&self, zone: &str, name: &str) -> Result<String, files::Error>;
    fn set_file_meta(&self, zone: &str, name: &str, meta: &str) -> Result<(), files::Error>;

    fn list_archives(&self) -> Result<Vec<Entry>, archive_dir::Error>;
    fn stat_archive(&self, name: &str) -> Result<Option<Entry>, archive_dir::Error>;
    fn create_archive(&self, name: &str) -> Result<Self::Writer, archive_dir::Error>;
    fn open_archive(&self, name: &str) -> Result<Self::Reader, archive_dir::Error>;
    fn remove_archive(&self, name: &str) -> Result<(), archive_dir::Error>;
    fn remove_archive_if_unchanged(
        &self,
        name: &str,
        expected: &Entry,
    ) -> Result<(), archive_dir::Error>;
    fn archive_path(&self, name: &str) -> Result<String, archive_dir::Error>;
    /// Whether a path from meta names archive `name` in the archive directory.
    fn is_archive_path_of(&self, path: &str, name: &str) -> Result<bool, archive_dir::Error>;

    fn export_write(&self, chunk: &[u8]) -> Result<(), export_sink::Error>;
    /// Compresses `output[offset, offset + length)` of `id` as members on the host's workers
    /// and appends them to `w` (the WIT `members.write-members`).
    fn write_members(
        &self,
        w: &Self::Writer,
        id: &str,
        offset: u64,
        length: u64,
        member_bytes: u64,
    ) -> Result<Vec<MemberWritten>, archive_dir::Error>;
    /// Reads archive `name` back and checks it is exactly `members`, in parallel (the WIT
    /// `members.verify-members`): `Some(what is wrong)` when it is not.
    fn verify_members(
        &self,
        name: &str,
        members: &[MemberWritten],
    ) -> Result<Option<String>, archive_dir::Error>;
    /// An inflater for this operation, or `None` when the host runs no helpers for it (the WIT
    /// `members.start-inflate`).
    fn start_inflate(&self) -> Result<Option<Self::Inflater>, archive_dir::Error>;
}

/// The real imports of the `archive-policy` world.
#[derive(Debug, Default, Clone, Copy)]
pub struct WitHost;

impl ArchiveWrite for archive_dir::Writer {
    fn write(&self, chunk: &[u8]) -> Result<(), archive_dir::Error> {
        archive_dir::Writer::write(self, chunk)
    }
    fn commit(&self) -> Result<Entry, archive_dir::Error> {
        archive_dir::Writer::commit(self)
    }
    fn abort(&self) {
        archive_dir::Writer::abort(self)
    }
}

impl ArchiveRead for archive_dir::Reader {
    fn read(&self, max: u32) -> Result<Vec<u8>, archive_dir::Error> {
        archive_dir::Reader::read(self, max)
    }
    fn size(&self) -> u64 {
        archive_dir::Reader::size(self)
    }
}

impl Inflate for members::Inflater {
    fn push(&self, member: &[u8], raw_len: u64) -> Result<Option<Inflated>, archive_dir::Error> {
        members::Inflater::push(self, member, raw_len)
    }
    fn next(&self) -> Result<Option<Inflated>, archive_dir::Error> {
        members::Inflater::next(self)
    }
}

impl Host for WitHost {
    type Writer = archive_dir::Writer;
    type Reader = archive_dir::Reader;
    type Inflater = members::Inflater;

    fn now_ms(&self) -> i64 {
        crate::bindings::session_archiver::policy::clock::now_ms()
    }
    fn log(&self, level: Level, message: &str) {
        crate::bindings::session_archiver::policy::log::log(level, message)
    }
    fn list_objects(&self, after: Option<&str>, limit: u32) -> Result<Page, objects::Error> {
        objects::list(after, limit)
    }
    fn get_object(&self, id: &str) -> Result<Object, objects::Error> {
        objects::get(id)
    }
    fn update_meta(&self, id: &str, patch: &str) -> Result<Object, objects::Error> {
        objects::update_meta(id, patch)
    }
    fn update_meta_if(
        &self,
        id: &str,
        patch: &str,
        version: u64,
    ) -> Result<Object, objects::Error> {
        objects::update_meta_if(id, patch, version)
    }
    fn stat_file(&self, zone: &str, name: &str) -> Result<Option<FileStat>, files::Error> {
        files::stat(zone, name)
    }
    fn read_file(
        &self,
        zone: &str,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, files::Error> {
        files::read(zone, name, offset, len)
    }
    fn create_file(
        &self,
        zone: &str,
        name: &str,
        circular_max_size: Option<u64>,
    ) -> Result<FileStat, files::Error> {
        files::create(zone, name, circular_max_size)
    }
    fn append_file(&self, zone: &str, name: &str, data: &[u8]) -> Result<FileStat, files::Error> {
        files::append(zone, name, data)
    }
    fn delete_file_if_unchanged(
        &self,
        zone: &str,
        name: &str,
        expected: &FileStat,
    ) -> Result<(), files::Error> {
        files::delete_if_unchanged(zone, name, *expected)
    }
    fn delete_file(&self, zone: &str, name: &str) -> Result<(), files::Error> {
        files::delete(zone, name)
    }
    fn rename_file_if_unchanged(
        &self,
        zone: &str,
        source: &str,
        target: &str,
        expected: Option<&FileStat>,
    ) -> Result<(), files::Error> {
        files::rename_if_unchanged(zone, source, target, expected.copied())
    }
    fn get_file_meta(&self, zone: &str, name: &str) -> Result<String, files::Error> {
        files::get_meta(zone, name)
    }
    fn set_file_meta(&self, zone: &str, name: &str, meta: &str) -> Result<(), files::Error> {
        files::set_meta(zone, name, meta)
    }
    fn list_archives(&self) -> Result<Vec<Entry>, archive_dir::Error> {
        archive_dir::list()
    }
    fn stat_archive(&self, name: &str) -> Result<Option<Entry>, archive_dir::Error> {
        archive_dir::stat(name)
    }
    fn create_archive(&self, name: &str) -> Result<Self::Writer, archive_dir::Error> {
        archive_dir::create(name)
    }
    fn open_archive(&self, name: &str) -> Result<Self::Reader, archive_dir::Error> {
        archive_dir::open(name)
    }
    fn remove_archive(&self, name: &str) -> Result<(), archive_dir::Error> {
        archive_dir::remove(name)
    }
    fn remove_archive_if_unchanged(
        &self,
        name: &str,
        expected: &Entry,
    ) -> Result<(), archive_dir::Error> {
        archive_dir::remove_if_unchanged(name, expected)
    }
    fn archive_path(&self, name: &str) -> Result<String, archive_dir::Error> {
        archive_dir::path(name)
    }
    fn is_archive_path_of(&self, path: &str, name: &str) -> Result<bool, archive_dir::Error> {
        archive_dir::is_path_of(path, name)
    }
    fn export_write(&self, chunk: &[u8]) -> Result<(), export_sink::Error> {
        export_sink::write(chunk)
    }
    fn write_members(
        &self,
        w: &Self::Writer,
        id: &str,
        offset: u64,
        length: u64,
        member_bytes: u64,
    ) -> Result<Vec<MemberWritten>, archive_dir::Error> {
        members::write_members(w, id, offset, length, member_bytes)
    }
    fn verify_members(
        &self,
        name: &str,
        members: &[MemberWritten],
    ) -> Result<Option<String>, archive_dir::Error> {
        members::verify_members(name, members)
    }
    fn start_inflate(&self) -> Result<Option<Self::Inflater>, archive_dir::Error> {
        members::start_inflate()
    }
}

/// Maps an object-store error to the policy's error.
pub fn obj_err(e: objects::Error) -> api::Error {
    match e {
        objects::Error::NotFound(m) => api::Error::NotFound(m),
        objects::Error::Invalid(m) => api::Error::Invalid(m),
        objects::Error::Io(m) => api::Error::Io(format!("object store: {m}")),
        objects::Error::Conflict(m) => api::Error::Conflict(m),
    }
}

/// Maps a file-store error to the policy's error, with what we were doing.
pub fn file_err(what: &str, e: files::Error) -> api::Error {
    match e {
        files::Error::NotFound(m) => api::Error::Io(format!("{what}: file not found: {m}")),
        files::Error::Invalid(m) => api::Error::Invalid(format!("{what}: {m}")),
        files::Error::Conflict(m) => api::Error::Conflict(format!("{what}: {m}")),
        files::Error::AlreadyExists(m) => api::Error::Io(format!("{what}: already exists: {m}")),
        files::Error::Io(m) => api::Error::Io(format!("{what}: {m}")),
    }
}

/// Maps an archive-directory error to the policy's error, with what we were doing.
pub fn dir_err(what: &str, e: archive_dir::Error) -> api::Error {
    match e {
        archive_dir::Error::NotFound(m) => {
            api::Error::Io(format!("{what}: archive not found: {m}"))
        }
        archive_dir::Error::InvalidName(m) => {
            api::Error::Invalid(format!("{what}: invalid archive name: {m}"))
        }
        archive_dir::Error::Invalid(m) => api::Error::Invalid(format!("{what}: {m}")),
        archive_dir::Error::Io(m) => api::Error::Io(format!("{what}: {m}")),
        archive_dir::Error::Conflict(m) => api::Error::Conflict(format!("{what}: {m}")),
    }
}

/// Maps an export-sink error to the policy's error.
pub fn sink_err(e: export_sink::Error) -> api::Error {
    match e {
        export_sink::Error::Invalid(m) => api::Error::Invalid(format!("export sink: {m}")),
        export_sink::Error::Io(m) => api::Error::Io(format!("export sink: {m}")),
    }
}

impl From<crate::gzip::GzError> for api::Error {
    fn from(e: crate::gzip::GzError) -> Self {
        use crate::gzip::GzError;
        match e {
            GzError::Corrupt { .. } => api::Error::Corrupt(e.to_string()),
            GzError::TooLarge { .. } => api::Error::TooLarge(e.to_string()),
            GzError::InvalidLevel(_) => api::Error::InvalidConfig(e.to_string()),
            _ => api::Error::Io(e.to_string()),
        }
    }
}

impl From<crate::meta::MetaError> for api::Error {
    fn from(e: crate::meta::MetaError) -> Self {
        api::Error::InvalidMeta(e.to_string())
    }
}
