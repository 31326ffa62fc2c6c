//! Chunked copies over the host imports: live file ranges, archives through gzip, and the
//! verified read-back every archive gets before anything is recorded.

use super::{Error, CHUNK, OUTPUT_FILE};
use crate::decisions::{Parallel, MAX_MEMBER_BYTES};
use crate::gzip::{
    crc32_combine, member_index, DecodeSummary, GzDecoder, GzEncoder, GzError, MemberIndex,
    INDEX_HEADER_LEN,
};
use crate::host::{
    archive_dir, dir_err, file_err, files, members, ArchiveRead, ArchiveWrite, FileStat, Host,
    Inflate, MemberWritten,
};

/// Collects small pieces into ~1 MiB chunks before handing them to a host call.
pub(super) struct Chunker<'a> {
    buf: Vec<u8>,
    out: &'a mut dyn FnMut(&[u8]) -> Result<(), Error>,
}

impl<'a> Chunker<'a> {
    pub(super) fn new(out: &'a mut dyn FnMut(&[u8]) -> Result<(), Error>) -> Self {
        Chunker {
            buf: Vec::new(),
            out,
        }
    }
    pub(super) fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.buf.is_empty() && data.len() >= CHUNK {
            // Already a whole chunk (an inflated member's piece): no copy, one host call.
            return (self.out)(data);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    pub(super) fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            (self.out)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads `zone/name` over `[from, to)` in chunks into `sink`; a file that ends early changed
/// underneath us, which is a conflict.
pub fn copy_file_range<H: Host>(
    h: &H,
    zone: &str,
    name: &str,
    from: u64,
    to: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut off = from;
    while off < to {
        let len = (to - off).min(CHUNK as u64) as u32;
        let data = match h.read_file(zone, name, off, len) {
            Ok(d) => d,
            Err(files::Error::NotFound(m)) => {
                return Err(Error::Conflict(format!(
                    "{zone}/{name} was deleted while being read: {m}"
                )))
            }
            // A circular file wrapped past `off` since the caller's stat: the bytes asked for
            // are gone (see [`copy_live_tail`] for the retry).
            Err(files::Error::Conflict(m)) => {
                return Err(Error::Conflict(format!(
                    "{zone}/{name}: byte {off} fell out of the circular file while being read: {m}"
                )))
            }
            Err(e) => return Err(file_err("read live output", e)),
        };
        if data.is_empty() {
            return Err(Error::Conflict(format!(
                "{zone}/{name} shrank while being read (ended at {off}, expected {to})"
            )));
        }
        let take = data.len().min((to - off) as usize);
        sink(&data[..take])?;
        off += take as u64;
    }
    Ok(())
}

/// How often a copy of a live tail starts over from a fresh stat because the circular file
/// wrapped past its start before its first byte was read.
const TAIL_ATTEMPTS: usize = 8;

/// Copies the live file from `start(stat)` to the size of a fresh stat into `sink`; returns the
/// stat copied up to (`None`: no file). A circular file the app appends to can wrap past the
/// start between the stat and the first read (the read is then a conflict): as long as no byte
/// reached `sink`, start over from a fresh stat; once bytes did, a gap would follow them, so that
/// is a conflict for the caller. No byte is ever repeated or skipped.
pub(super) fn copy_live_tail<H: Host>(
    h: &H,
    id: &str,
    start: &mut dyn FnMut(&FileStat) -> Result<u64, Error>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<Option<(FileStat, u64)>, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(s) = h
            .stat_file(id, OUTPUT_FILE)
            .map_err(|e| file_err("stat live output", e))?
        else {
            return Ok(None);
        };
        let mut delivered = 0u64;
        let result = start(&s).and_then(|from| {
            copy_file_range(h, id, OUTPUT_FILE, from, s.size, &mut |c| {
                delivered += c.len() as u64;
                sink(c)
            })
            .map(|()| from)
        });
        match result {
            Ok(from) => return Ok(Some((s, from))),
            Err(Error::Conflict(_)) if delivered == 0 && attempt < TAIL_ATTEMPTS => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Streams an archive through the gzip decoder into `sink`, refusing to inflate past `limit`.
///
/// An archive whose members carry our index ([`member_index`]: the parallel archive path writes
/// it) goes to the host's inflater when it offers one: whole members are cut out by the lengths
/// their headers record and inflated on helper instances in parallel, and come back in order.
/// Anything else, and everything from the first member without a usable index on, is inflated
/// here by [`GzDecoder`], which has the last word on what is wrong with a damaged file.
pub fn gunzip_archive<H: Host>(
    h: &H,
    name: &str,
    limit: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<DecodeSummary, Error> {
    let reader = match h.open_archive(name) {
        Ok(r) => r,
        Err(archive_dir::Error::NotFound(_)) => {
            return Err(Error::Corrupt(format!("archive {name} is missing")))
        }
        Err(e) => return Err(dir_err("open archive", e)),
    };
    let mut input = ArchiveInput {
        reader: &reader,
        buf: Vec::new(),
        eof: false,
    };
    input.fill(INDEX_HEADER_LEN as u64)?;
    let mut done = Delivered::default();
    if matches!(member_index(&input.buf), MemberIndex::Indexed { .. }) {
        if let Some(inflater) = h
            .start_inflate()
            .map_err(|e| dir_err("start inflating members", e))?
        {
            inflate_indexed(&inflater, &mut input, limit, &mut done, sink)?;
            if input.buf.is_empty() && input.eof {
                return Ok(done.summary());
            }
        }
    }
    let too_large = || Error::from(GzError::TooLarge { limit });
    let mut dec = GzDecoder::resume(limit - done.raw_len, done.offset, done.members);
    let mut chunk = std::mem::take(&mut input.buf);
    loop {
        if chunk.is_empty() {
            if input.eof {
                break;
            }
            chunk = input.read()?;
            continue;
        }
        dec.write(&chunk, sink).map_err(|e| match e {
            Error::TooLarge(_) => too_large(),
            other => other,
        })?;
        chunk.clear();
    }
    let rest = dec.finish()?;
    Ok(DecodeSummary {
        members: rest.members,
        raw_len: done.raw_len + rest.raw_len,
        crc32: crc32_combine(done.crc32, rest.crc32, rest.raw_len),
        input_len: rest.input_len,
    })
}

/// The archive as it is read: bytes read and not yet used.
struct ArchiveInput<'a, R: ArchiveRead> {
    reader: &'a R,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: ArchiveRead> ArchiveInput<'_, R> {
    /// The next chunk of the file (empty at its end).
    fn read(&mut self) -> Result<Vec<u8>, Error> {
        let chunk = self
            .reader
            .read(CHUNK as u32)
            .map_err(|e| dir_err("read archive", e))?;
        self.eof = chunk.is_empty();
        Ok(chunk)
    }

    /// Reads until `n` bytes are buffered or the file ends.
    fn fill(&mut self, n: u64) -> Result<(), Error> {
        while !self.eof && (self.buf.len() as u64) < n {
            let chunk = self.read()?;
            self.buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    /// Takes the first `n` buffered bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }
}

/// The members handed on so far, in file order.
#[derive(Default)]
struct Delivered {
    members: u32,
    raw_len: u64,
    crc32: u32,
    /// Compressed bytes they take.
    offset: u64,
}

impl Delivered {
    fn summary(&self) -> DecodeSummary {
        DecodeSummary {
            members: self.members,
            raw_len: self.raw_len,
            crc32: self.crc32,
            input_len: self.offset,
        }
    }
}

/// The largest list a host call takes (`files.append`, `export-sink.write`).
const MAX_HOST_CHUNK: usize = 4 << 20;

/// Largest compressed member the index may announce: a 64 MiB member stored uncompressed, with
/// deflate's block headers, the gzip header and trailer.
const MAX_MEMBER_GZ_BYTES: u64 = MAX_MEMBER_BYTES + (1 << 20);

/// Hands the indexed members at the front of `input` to `inflater` and passes what comes back to
/// `sink` in order; stops (with every member pushed delivered) at the end of the file or at the
/// first member whose index is missing or implausible, which is left in `input`.
fn inflate_indexed<I: Inflate, R: ArchiveRead>(
    inflater: &I,
    input: &mut ArchiveInput<'_, R>,
    limit: u64,
    done: &mut Delivered,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    // Members pushed and not yet back: (member number, offset, raw length).
    let mut queued = std::collections::VecDeque::new();
    let mut deliver = |out: members::Inflated,
                       queued: &mut std::collections::VecDeque<(u32, u64, u64)>,
                       done: &mut Delivered|
     -> Result<(), Error> {
        let (no, at, raw_len) = queued.pop_front().ok_or_else(|| {
            Error::Io("the host's inflater returned a member that was never pushed".into())
        })?;
        match out {
            members::Inflated::Member(m) => {
                if m.bytes.len() as u64 != raw_len {
                    return Err(Error::Io(format!(
                        "the host's inflater returned {} bytes for member {no}, expected {raw_len}",
                        m.bytes.len()
                    )));
                }
                // Pieces as large as a host call takes: a restore appends a default 4 MiB member
                // in one SQLite transaction instead of four.
                for piece in m.bytes.chunks(MAX_HOST_CHUNK) {
                    sink(piece)?;
                }
                done.crc32 = crc32_combine(done.crc32, m.crc32, raw_len);
                done.raw_len += raw_len;
                done.members += 1;
                Ok(())
            }
            members::Inflated::Corrupt(why) => Err(Error::Corrupt(
                GzError::Corrupt {
                    offset: at,
                    message: format!("member {no}: {why}"),
                }
                .to_string(),
            )),
        }
    };
    let (mut pushed, mut pushed_raw, mut offset) = (done.members, done.raw_len, done.offset);
    loop {
        input.fill(INDEX_HEADER_LEN as u64)?;
        let MemberIndex::Indexed { gz_len, raw_len } = member_index(&input.buf) else {
            break;
        };
        let plausible = (INDEX_HEADER_LEN as u64 + 10..=MAX_MEMBER_GZ_BYTES).contains(&gz_len)
            && (1..=MAX_MEMBER_BYTES).contains(&raw_len);
        if !plausible {
            break;
        }
        if pushed_raw + raw_len > limit {
            return Err(GzError::TooLarge { limit }.into());
        }
        input.fill(gz_len)?;
        if (input.buf.len() as u64) < gz_len {
            // Truncated: the decoder says exactly where.
            break;
        }
        let member = input.take(gz_len as usize);
        pushed += 1;
        queued.push_back((pushed, offset, raw_len));
        pushed_raw += raw_len;
        offset += gz_len;
        let out = inflater
            .push(&member, raw_len)
            .map_err(|e| dir_err("inflate archive members", e))?;
        if let Some(out) = out {
            deliver(out, &mut queued, done)?;
        }
    }
    while let Some(out) = inflater
        .next()
        .map_err(|e| dir_err("inflate archive members", e))?
    {
        deliver(out, &mut queued, done)?;
    }
    if !queued.is_empty() {
        return Err(Error::Io(format!(
            "the host's inflater returned {} of {} members",
            done.members, pushed
        )));
    }
    done.offset = offset;
    Ok(())
}

/// [`gunzip_archive`] with the archive checked against what meta records: exactly `raw_len`
/// bytes (never inflating past them) and CRC-32 `crc` when known. Any difference is `corrupt`.
pub(super) fn gunzip_checked<H: Host>(
    h: &H,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), Error>,
) -> Result<DecodeSummary, Error> {
    let summary = gunzip_archive(h, name, raw_len, sink).map_err(|e| match e {
        Error::TooLarge(_) => Error::Corrupt(format!(
            "archive {name} decompresses to more than the {raw_len} bytes recorded"
        )),
        other => other,
    })?;
    if summary.raw_len != raw_len {
        return Err(Error::Corrupt(format!(
            "archive {name} holds {} bytes, expected {raw_len}",
            summary.raw_len
        )));
    }
    if let Some(want) = crc {
        if summary.crc32 != want {
            return Err(Error::Corrupt(format!(
                "archive {name} CRC-32 {:#010x}, expected {want:#010x}",
                summary.crc32
            )));
        }
    }
    Ok(summary)
}

/// Reads an archive back and checks it holds exactly `raw_len` bytes with CRC-32 `crc` (when
/// known). Any difference is `corrupt`.
pub fn verify_archive<H: Host>(
    h: &H,
    name: &str,
    raw_len: u64,
    crc: Option<u32>,
) -> Result<(), Error> {
    gunzip_checked(h, name, raw_len, crc, &mut |_| Ok(())).map(|_| ())
}

/// What writing an archive produced.
pub(super) struct Written {
    pub(super) raw_len: u64,
    pub(super) crc32: u32,
    pub(super) gz_bytes: u64,
    /// The members the host wrote, on the parallel path.
    pub(super) members: Option<Vec<MemberWritten>>,
}

/// Streams `output[from..to)` through gzip into a new archive `name` and commits it; on any error
/// the writer is aborted, so no file of that name is created or changed. A range of at least
/// `parallel.min_bytes` is compressed by the host's workers as members of
/// `parallel.member_bytes` each ([`write_members`]); a smaller one as one member here.
pub(super) fn write_archive<H: Host>(
    h: &H,
    id: &str,
    name: &str,
    from: u64,
    to: u64,
    level: u8,
    parallel: Parallel,
) -> Result<Written, Error> {
    let writer = h
        .create_archive(name)
        .map_err(|e| dir_err("create archive", e))?;
    if to - from >= parallel.min_bytes {
        let result = write_members(h, &writer, id, from, to, parallel.member_bytes).and_then(
            |(raw_len, crc32, members)| {
                let entry = writer.commit().map_err(|e| dir_err("commit archive", e))?;
                Ok(Written {
                    raw_len,
                    crc32,
                    gz_bytes: entry.size,
                    members: Some(members),
                })
            },
        );
        if result.is_err() {
            writer.abort();
        }
        return result;
    }
    let result = (|| {
        let mut enc = GzEncoder::new(level)?;
        copy_file_range(h, id, OUTPUT_FILE, from, to, &mut |data| {
            let gz = enc.write(data)?;
            if !gz.is_empty() {
                writer.write(&gz).map_err(|e| dir_err("write archive", e))?;
            }
            Ok(())
        })?;
        let (raw_len, crc32) = (enc.raw_len(), enc.crc32());
        writer
            .write(&enc.finish()?)
            .map_err(|e| dir_err("write archive", e))?;
        let entry = writer.commit().map_err(|e| dir_err("commit archive", e))?;
        Ok(Written {
            raw_len,
            crc32,
            gz_bytes: entry.size,
            members: None,
        })
    })();
    if result.is_err() {
        writer.abort();
    }
    result
}

/// Has the host compress `output[from..to)` as members into `writer`; returns the length and the
/// CRC-32 of the whole range, combined from the members' (the read-back verify then checks the
/// file against them, so a host that misreports a member is caught there).
fn write_members<H: Host>(
    h: &H,
    writer: &H::Writer,
    id: &str,
    from: u64,
    to: u64,
    member_bytes: u64,
) -> Result<(u64, u32, Vec<MemberWritten>), Error> {
    let members = h
        .write_members(writer, id, from, to - from, member_bytes)
        .map_err(|e| dir_err("write archive members", e))?;
    let mut raw_len = 0u64;
    let mut crc = 0u32;
    for m in &members {
        crc = crc32_combine(crc, m.crc32, m.raw_len);
        raw_len = raw_len.saturating_add(m.raw_len);
    }
    if raw_len != to - from {
        return Err(Error::Io(format!(
            "the host wrote members of {raw_len} bytes for the {} bytes of {id}'s output",
            to - from
        )));
    }
    Ok((raw_len, crc, members))
}

/// Has the host read the committed archive `name` back and check it is exactly `members` (each
/// inflated to its length and CRC-32, in parallel); any difference is `corrupt`.
pub(super) fn verify_members<H: Host>(
    h: &H,
    name: &str,
    members: &[MemberWritten],
) -> Result<(), Error> {
    match h.verify_members(name, members) {
        Ok(None) => Ok(()),
        Ok(Some(what)) => Err(Error::Corrupt(format!("archive {name}: {what}"))),
        Err(archive_dir::Error::NotFound(_)) => {
            Err(Error::Corrupt(format!("archive {name} is missing")))
        }
        Err(e) => Err(dir_err("verify archive members", e)),
    }
}
