//! gzip (RFC 1952) framing written by us on top of `miniz_oxide`'s raw deflate streams.
//!
//! We own the framing instead of using a gzip crate because the archive is the only copy of a
//! session's output once the live file is deleted: the decoder must say *exactly* what is wrong
//! (truncation, a bad CRC, trailing bytes that are not another member) instead of quietly stopping
//! at the first member as many decoders do, and it must stop a gzip bomb at a limit without ever
//! holding more than a small window in memory.

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// Size of the scratch buffers the encoder and decoder produce output into.
const OUT_BUF: usize = 64 * 1024;

const FTEXT: u8 = 0x01;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// What can go wrong encoding or decoding gzip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GzError {
    /// The input is not a complete, valid gzip file; `offset` is the input byte where it went wrong.
    #[error("corrupt gzip at byte offset {offset}: {message}")]
    Corrupt {
        /// Offset in the compressed input.
        offset: u64,
        /// What is wrong, for people.
        message: String,
    },
    /// Decompressing would produce more than `limit` bytes; decoding stopped before passing it.
    #[error("gzip output exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The output limit in force.
        limit: u64,
    },
    /// A compression level outside 0..=9.
    #[error("invalid gzip compression level {0} (expected 0..=9)")]
    InvalidLevel(u8),
    /// The deflate engine refused to go on (should not happen with valid parameters).
    #[error("deflate engine error: {0}")]
    Engine(String),
}

/// Streaming gzip encoder: one member, deflate at a chosen level, CRC-32 and ISIZE trailer.
///
/// Memory stays bounded (the compressor state plus one output buffer) whatever the input size.
pub struct GzEncoder {
    comp: Box<CompressorOxide>,
    crc: crc32fast::Hasher,
    len: u64,
    header_done: bool,
    indexed: bool,
    level: u8,
    buf: Vec<u8>,
}

/// Bytes of the header [`GzEncoder::indexed`] writes: the fixed 10, XLEN, and one 12-byte `extra`
/// subfield (`SA`, length 8) that [`seal_index`] fills with the member's own length and its
/// uncompressed length. A reader that knows it finds where the member ends without inflating it,
/// which is what lets restore and export inflate the members of one archive in parallel; every
/// gzip reader skips the subfield (RFC 1952 §2.3.1.1).
pub const INDEX_HEADER_LEN: usize = 24;
const INDEX_ID: [u8; 2] = *b"SA";

/// What the start of a member says about its length ([`member_index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberIndex {
    /// A member written by [`GzEncoder::indexed`]: `gz_len` bytes in all (header to trailer),
    /// inflating to `raw_len` bytes.
    Indexed {
        /// The whole member's length.
        gz_len: u64,
        /// Its uncompressed length.
        raw_len: u64,
    },
    /// Any other member (or not a member at all): only inflating it finds its end.
    Plain,
    /// Too few bytes to tell.
    NeedMore,
}

/// Reads the index of the member starting at `head[0]`, if it has ours.
pub fn member_index(head: &[u8]) -> MemberIndex {
    let want: [u8; 16] = [
        0x1f,
        0x8b,
        8,
        FEXTRA,
        0,
        0,
        0,
        0,
        0,
        0,
        12,
        0,
        INDEX_ID[0],
        INDEX_ID[1],
        8,
        0,
    ];
    // Bytes 8 (XFL) and 9 (OS) may be anything.
    let same = |i: usize| i == 8 || i == 9 || head[i] == want[i];
    let n = head.len().min(16);
    if !(0..n).all(same) {
        return MemberIndex::Plain;
    }
    if head.len() < INDEX_HEADER_LEN {
        return MemberIndex::NeedMore;
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    MemberIndex::Indexed {
        gz_len: u64::from(word(16)),
        raw_len: u64::from(word(20)),
    }
}

/// Writes the lengths into the index of a complete member made by [`GzEncoder::indexed`].
pub fn seal_index(member: &mut [u8], raw_len: u64) -> Result<(), GzError> {
    if member_index(member) == MemberIndex::Plain || member.len() < INDEX_HEADER_LEN {
        return Err(GzError::Engine("member has no index header to seal".into()));
    }
    let (Ok(gz), Ok(raw)) = (u32::try_from(member.len()), u32::try_from(raw_len)) else {
        return Err(GzError::Engine(format!(
            "member of {} bytes ({raw_len} uncompressed) is too large to index",
            member.len()
        )));
    };
    member[16..20].copy_from_slice(&gz.to_le_bytes());
    member[20..24].copy_from_slice(&raw.to_le_bytes());
    Ok(())
}

impl GzEncoder {
    /// A new encoder at `level` (0 = stored, 9 = best).
    pub fn new(level: u8) -> Result<Self, GzError> {
        if level > 9 {
            return Err(GzError::InvalidLevel(level));
        }
        // Negative window bits = raw deflate: we write the gzip framing ourselves.
        let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
        Ok(GzEncoder {
            comp: Box::new(CompressorOxide::new(flags)),
            crc: crc32fast::Hasher::new(),
            len: 0,
            header_done: false,
            indexed: false,
            level,
            buf: vec![0; OUT_BUF],
        })
    }

    /// An encoder whose header carries an index (see [`INDEX_HEADER_LEN`]) for one member held
    /// whole in memory: fill it with [`seal_index`] once the member is complete.
    pub fn indexed(level: u8) -> Result<Self, GzError> {
        let mut enc = Self::new(level)?;
        enc.indexed = true;
        Ok(enc)
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if self.header_done {
            return;
        }
        self.header_done = true;
        // XFL: 2 = slowest/best, 4 = fastest (RFC 1952 2.3.1).
        let xfl = match self.level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        let flags = if self.indexed { FEXTRA } else { 0 };
        // ID1 ID2 CM FLG MTIME(4) XFL OS(255 = unknown)
        out.extend_from_slice(&[0x1f, 0x8b, 8, flags, 0, 0, 0, 0, xfl, 255]);
        if self.indexed {
            // XLEN, then the subfield: SI1 SI2 LEN, and 8 bytes `seal_index` fills in.
            out.extend_from_slice(&[12, 0, INDEX_ID[0], INDEX_ID[1], 8, 0]);
            out.extend_from_slice(&[0; 8]);
        }
    }

    fn pump(&mut self, mut input: &[u8], flush: MZFlush, out: &mut Vec<u8>) -> Result<(), GzError> {
        loop {
            let res =
                miniz_oxide::deflate::stream::deflate(&mut self.comp, input, &mut self.buf, flush);
            out.extend_from_slice(&self.buf[..res.bytes_written]);
            input = &input[res.bytes_consumed..];
            match res.status {
                Ok(MZStatus::StreamEnd) => return Ok(()),
                Ok(_) => {
                    if flush != MZFlush::Finish
                        && input.is_empty()
                        && res.bytes_written < self.buf.len()
                    {
                        return Ok(());
                    }
                }
                // No progress possible without more input: everything given was consumed.
                Err(MZError::Buf) if flush != MZFlush::Finish && input.is_empty() => return Ok(()),
                Err(e) => return Err(GzError::Engine(format!("{e:?}"))),
            }
        }
    }

    /// Compresses `input` and returns the gzip bytes ready so far (possibly none).
    pub fn write(&mut self, input: &[u8]) -> Result<Vec<u8>, GzError> {
        let mut out = Vec::new();
        self.header(&mut out);
        if input.is_empty() {
            return Ok(out);
        }
        self.crc.update(input);
        self.len += input.len() as u64;
        self.pump(input, MZFlush::None, &mut out)?;
        Ok(out)
    }

    /// Flushes the deflate stream and appends the trailer; returns the last bytes of the file.
    pub fn finish(mut self) -> Result<Vec<u8>, GzError> {
        let mut out = Vec::new();
        self.header(&mut out);
        self.pump(&[], MZFlush::Finish, &mut out)?;
        out.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        out.extend_from_slice(&(self.len as u32).to_le_bytes());
        Ok(out)
    }

    /// CRC-32 of everything written so far.
    pub fn crc32(&self) -> u32 {
        self.crc.clone().finalize()
    }

    /// Uncompressed bytes written so far.
    pub fn raw_len(&self) -> u64 {
        self.len
    }
}

/// The CRC-32 of `a` followed by `b`, from the CRC-32 of each and the length of `b`: how the CRC
/// of a multi-member archive is combined from its members' CRCs without reading the bytes again.
pub fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut whole = crc32fast::Hasher::new_with_initial_len(crc_a, 0);
    whole.combine(&crc32fast::Hasher::new_with_initial_len(crc_b, len_b));
    whole.finalize()
}

/// Compresses a whole buffer (tests and small data only; archives go through [`GzEncoder`]).
pub fn compress(data: &[u8], level: u8) -> Result<Vec<u8>, GzError> {
    let mut enc = GzEncoder::new(level)?;
    let mut out = enc.write(data)?;
    out.extend(enc.finish()?);
    Ok(out)
}

/// Where the header parser is inside one member's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderStep {
    Fixed,
    XLen,
    Extra(u16),
    Name,
    Comment,
    HeaderCrc,
    Done,
}

#[derive(Debug)]
enum Stage {
    /// Parsing a member header; `buf` collects the bytes of the fixed part, then of XLEN and
    /// HCRC; `hcrc` hashes the header for the FHCRC check.
    Header {
        step: HeaderStep,
        flags: u8,
        buf: [u8; 10],
        have: usize,
        hcrc: crc32fast::Hasher,
    },
    /// Inflating the member's deflate stream.
    Body,
    /// Reading the 8-byte CRC-32 + ISIZE trailer.
    Trailer { buf: [u8; 8], have: usize },
    /// Between members: the end of input, or another member's header.
    Between,
}

impl Stage {
    fn header() -> Stage {
        Stage::Header {
            step: HeaderStep::Fixed,
            flags: 0,
            buf: [0; 10],
            have: 0,
            hcrc: crc32fast::Hasher::new(),
        }
    }
}

/// What a completed decode saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Members in the file (1 for a plain gzip file, more for `cat a.gz b.gz`).
    pub members: u32,
    /// Total decompressed bytes.
    pub raw_len: u64,
    /// CRC-32 of all decompressed bytes (all members together).
    pub crc32: u32,
    /// Compressed bytes consumed.
    pub input_len: u64,
}

/// Streaming gzip decoder: any number of members, every header flag, CRC-32 and ISIZE checked, any
/// trailing byte that does not start another valid member rejected, output capped at a limit.
///
/// Feed input in chunks of any size with [`GzDecoder::write`]; decompressed bytes go to a sink in
/// pieces of at most 64 KiB; call [`GzDecoder::finish`] at the end of input. After a decoding
/// error every further call returns that error; after an error from the sink the decoder's state
/// is undefined and the caller must stop (every caller does).
pub struct GzDecoder {
    inflate: Box<InflateState>,
    stage: Stage,
    limit: u64,
    out_total: u64,
    offset: u64,
    members: u32,
    member_crc: crc32fast::Hasher,
    member_len: u64,
    /// CRC-32 of the members before the current one, combined from theirs (each byte is hashed
    /// once, for its member).
    all_crc: u32,
    buf: Vec<u8>,
    failed: Option<GzError>,
}

impl GzDecoder {
    /// A decoder that refuses to produce more than `limit` bytes.
    pub fn new(limit: u64) -> Self {
        GzDecoder {
            inflate: InflateState::new_boxed(DataFormat::Raw),
            stage: Stage::header(),
            limit,
            out_total: 0,
            offset: 0,
            members: 0,
            member_crc: crc32fast::Hasher::new(),
            member_len: 0,
            all_crc: 0,
            buf: vec![0; OUT_BUF],
            failed: None,
        }
    }

    /// A decoder that continues a file at byte `offset`, the start of member `members + 1` (the
    /// offsets and member numbers in its errors are the file's own; its summary counts the
    /// members before, but only its own bytes and their CRC-32).
    pub fn resume(limit: u64, offset: u64, members: u32) -> Self {
        let mut dec = Self::new(limit);
        dec.offset = offset;
        dec.members = members;
        if members > 0 {
            dec.stage = Stage::Between;
        }
        dec
    }

    fn corrupt(&mut self, offset: u64, message: impl Into<String>) -> GzError {
        let e = GzError::Corrupt {
            offset,
            message: message.into(),
        };
        self.failed = Some(e.clone());
        e
    }

    /// Which member we are in, 1-based, for messages.
    fn member_no(&self) -> u32 {
        self.members + 1
    }

    /// Decodes `input`, passing decompressed bytes to `sink` in order.
    ///
    /// The sink's error type must absorb [`GzError`] so callers get one error type back.
    pub fn write<E: From<GzError>>(
        &mut self,
        mut input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        while !input.is_empty() {
            let used = match self.stage {
                Stage::Header { .. } | Stage::Between => self.header_bytes(input)?,
                Stage::Body => self.body_bytes(input, sink)?,
                Stage::Trailer { .. } => self.trailer_bytes(input)?,
            };
            self.offset += used as u64;
            input = &input[used..];
        }
        Ok(())
    }

    fn header_bytes(&mut self, input: &[u8]) -> Result<usize, GzError> {
        if matches!(self.stage, Stage::Between) {
            self.stage = Stage::header();
        }
        let member = self.member_no();
        let mut used = 0;
        for &b in input {
            let at = self.offset + used as u64;
            used += 1;
            let Stage::Header {
                step,
                flags,
                buf,
                have,
                hcrc,
            } = &mut self.stage
            else {
                unreachable!("header_bytes runs in the header stage");
            };
            if *step != HeaderStep::HeaderCrc {
                hcrc.update(&[b]);
            }
            match *step {
                HeaderStep::Fixed => {
                    buf[*have] = b;
                    *have += 1;
                    // Check each byte as it arrives so garbage is reported at its own offset.
                    let bad = match *have {
                        1 if b != 0x1f => Some("bad magic byte (expected 0x1f)"),
                        2 if b != 0x8b => Some("bad magic byte (expected 0x8b)"),
                        3 if b != 8 => {
                            Some("unsupported compression method (expected 8 = deflate)")
                        }
                        4 if b & FRESERVED != 0 => Some("reserved header flag bits set"),
                        _ => None,
                    };
                    if let Some(why) = bad {
                        let msg = if member > 1 {
                            format!("trailing data after gzip member {} is not another gzip member: {why}", member - 1)
                        } else {
                            why.to_string()
                        };
                        return Err(self.corrupt(at, msg));
                    }
                    if *have == 10 {
                        // FTEXT is only a hint about the content: accepted and ignored.
                        *flags = buf[3] & !FTEXT;
                        *have = 0;
                        *step = next_step(*flags, HeaderStep::Fixed);
                    }
                }
                HeaderStep::XLen => {
                    buf[*have] = b;
                    *have += 1;
                    if *have == 2 {
                        let xlen = u16::from_le_bytes([buf[0], buf[1]]);
                        *have = 0;
                        *step = if xlen == 0 {
                            next_step(*flags, HeaderStep::Extra(0))
                        } else {
                            HeaderStep::Extra(xlen)
                        };
                    }
                }
                HeaderStep::Extra(left) => {
                    *step = if left <= 1 {
                        next_step(*flags, HeaderStep::Extra(0))
                    } else {
                        HeaderStep::Extra(left - 1)
                    };
                }
                HeaderStep::Name => {
                    if b == 0 {
                        *step = next_step(*flags, HeaderStep::Name);
                    }
                }
                HeaderStep::Comment => {
                    if b == 0 {
                        *step = next_step(*flags, HeaderStep::Comment);
                    }
                }
                HeaderStep::HeaderCrc => {
                    buf[*have] = b;
                    *have += 1;
                    if *have == 2 {
                        let want = u16::from_le_bytes([buf[0], buf[1]]);
                        let got = (hcrc.clone().finalize() & 0xffff) as u16;
                        if want != got {
                            return Err(self.corrupt(
                                at - 1,
                                format!("header CRC16 mismatch in member {member}: stored {want:#06x}, computed {got:#06x}"),
                            ));
                        }
                        *step = HeaderStep::Done;
                    }
                }
                HeaderStep::Done => unreachable!("a finished header is never fed"),
            }
            if self.header_complete() {
                self.start_body();
                return Ok(used);
            }
        }
        Ok(used)
    }

    fn header_complete(&self) -> bool {
        match &self.stage {
            Stage::Header { step, .. } => *step == HeaderStep::Done,
            _ => false,
        }
    }

    fn start_body(&mut self) {
        self.inflate.reset(DataFormat::Raw);
        self.member_crc = crc32fast::Hasher::new();
        self.member_len = 0;
        self.stage = Stage::Body;
    }

    fn body_bytes<E: From<GzError>>(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut used = 0;
        loop {
            let res = miniz_oxide::inflate::stream::inflate(
                &mut self.inflate,
                &input[used..],
                &mut self.buf,
                MZFlush::None,
            );
            used += res.bytes_consumed;
            let n = res.bytes_written;
            if n > 0 {
                if self.out_total + n as u64 > self.limit {
                    let e = GzError::TooLarge { limit: self.limit };
                    self.failed = Some(e.clone());
                    return Err(e.into());
                }
                self.out_total += n as u64;
                self.member_len += n as u64;
                self.member_crc.update(&self.buf[..n]);
                // Split borrow: the sink may not touch the decoder.
                let chunk = &self.buf[..n];
                sink(chunk)?;
            }
            match res.status {
                Ok(MZStatus::StreamEnd) => {
                    self.stage = Stage::Trailer {
                        buf: [0; 8],
                        have: 0,
                    };
                    return Ok(used);
                }
                Ok(_) => {
                    if used == input.len() && n == 0 {
                        return Ok(used);
                    }
                }
                Err(MZError::Buf) if used == input.len() => return Ok(used),
                Err(e) => {
                    let at = self.offset + used as u64;
                    let member = self.member_no();
                    return Err(self
                        .corrupt(
                            at,
                            format!("invalid deflate data in member {member} ({e:?})"),
                        )
                        .into());
                }
            }
        }
    }

    fn trailer_bytes(&mut self, input: &[u8]) -> Result<usize, GzError> {
        let Stage::Trailer { buf, have } = &mut self.stage else {
            unreachable!("trailer_bytes runs in the trailer stage");
        };
        let take = (8 - *have).min(input.len());
        buf[*have..*have + take].copy_from_slice(&input[..take]);
        *have += take;
        if *have < 8 {
            return Ok(take);
        }
        let want_crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let want_len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let got_crc = self.member_crc.clone().finalize();
        let got_len = self.member_len as u32;
        let member = self.member_no();
        let trailer_at = self.offset + take as u64 - 8;
        if want_crc != got_crc {
            return Err(self.corrupt(
                trailer_at,
                format!("CRC-32 mismatch in member {member}: stored {want_crc:#010x}, computed {got_crc:#010x}"),
            ));
        }
        if want_len != got_len {
            return Err(self.corrupt(
                trailer_at + 4,
                format!("length mismatch in member {member}: stored {want_len}, decompressed {got_len} (mod 2^32)"),
            ));
        }
        self.members += 1;
        self.all_crc = crc32_combine(self.all_crc, got_crc, self.member_len);
        self.stage = Stage::Between;
        Ok(take)
    }

    /// Ends the input: succeeds only at the end of a complete member (and at least one).
    pub fn finish(&mut self) -> Result<DecodeSummary, GzError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let at = self.offset;
        let member = self.member_no();
        let why = match &self.stage {
            Stage::Between => {
                return Ok(DecodeSummary {
                    members: self.members,
                    raw_len: self.out_total,
                    crc32: self.all_crc,
                    input_len: self.offset,
                })
            }
            Stage::Header {
                step: HeaderStep::Fixed,
                have: 0,
                ..
            } if self.members == 0 => "empty input: not a gzip file".to_string(),
            Stage::Header { .. } => {
                format!("truncated: input ends inside the header of member {member}")
            }
            Stage::Body => {
                format!("truncated: input ends inside the deflate data of member {member}")
            }
            Stage::Trailer { .. } => {
                format!("truncated: input ends inside the trailer of member {member}")
            }
        };
        Err(self.corrupt(at, why))
    }

    /// Decompressed bytes so far.
    pub fn raw_len(&self) -> u64 {
        self.out_total
    }
}

/// The header part that follows `after`, given the member's flags; `Done` when none does.
fn next_step(flags: u8, after: HeaderStep) -> HeaderStep {
    let order = [
        (HeaderStep::XLen, FEXTRA),
        (HeaderStep::Name, FNAME),
        (HeaderStep::Comment, FCOMMENT),
        (HeaderStep::HeaderCrc, FHCRC),
    ];
    let start = match after {
        HeaderStep::Fixed => 0,
        HeaderStep::XLen | HeaderStep::Extra(_) => 1,
        HeaderStep::Name => 2,
        HeaderStep::Comment => 3,
        HeaderStep::HeaderCrc | HeaderStep::Done => 4,
    };
    order[start..]
        .iter()
        .find(|(_, f)| flags & f != 0)
        .map(|(s, _)| *s)
        .unwrap_or(HeaderStep::Done)
}

/// Decompresses a whole buffer with a limit (tests and small data only).
pub fn decompress(data: &[u8], limit: u64) -> Result<Vec<u8>, GzError> {
    let mut out = Vec::new();
    let mut dec = GzDecoder::new(limit);
    dec.write(data, &mut |c: &[u8]| -> Result<(), GzError> {
        out.extend_from_slice(c);
        Ok(())
    })?;
    dec.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        while v.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let line = format!("{{\"seq\":{},\"text\":\"{}\"}}\n", v.len(), x % 1000);
            v.extend_from_slice(line.as_bytes());
        }
        v.truncate(n);
        v
    }

    fn flate2_gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn flate2_gunzip_multi(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn is_corrupt(r: Result<Vec<u8>, GzError>) -> bool {
        matches!(r, Err(GzError::Corrupt { .. }))
    }

    #[test]
    fn round_trip_at_every_level_and_flate2_agrees() {
        let data = sample(300_000);
        for level in 0..=9 {
            let gz = compress(&data, level).unwrap();
            assert_eq!(decompress(&gz, u64::MAX).unwrap(), data, "level {level}");
            assert_eq!(flate2_gunzip_multi(&gz), data, "flate2 reads level {level}");
            assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
            assert_eq!(gz[9], 255, "OS = unknown");
        }
    }

    #[test]
    fn streaming_encoder_in_small_writes_matches_the_data() {
        let data = sample(200_000);
        let mut enc = GzEncoder::new(6).unwrap();
        let mut gz = Vec::new();
        for chunk in data.chunks(777) {
            gz.extend(enc.write(chunk).unwrap());
        }
        assert_eq!(enc.raw_len(), data.len() as u64);
        assert_eq!(enc.crc32(), crc32fast::hash(&data));
        gz.extend(enc.finish().unwrap());
        assert_eq!(flate2_gunzip_multi(&gz), data);
    }

    #[test]
    fn an_indexed_member_records_its_lengths_and_every_reader_skips_the_index() {
        let data = sample(300_000);
        let mut enc = GzEncoder::indexed(6).unwrap();
        let mut gz = enc.write(&data).unwrap();
        gz.extend(enc.finish().unwrap());
        assert_eq!(
            member_index(&gz),
            MemberIndex::Indexed {
                gz_len: 0,
                raw_len: 0
            }
        );
        seal_index(&mut gz, data.len() as u64).unwrap();
        assert_eq!(
            member_index(&gz),
            MemberIndex::Indexed {
                gz_len: gz.len() as u64,
                raw_len: data.len() as u64
            }
        );
        assert_eq!(member_index(&gz[..20]), MemberIndex::NeedMore);
        let two = [gz.clone(), gz.clone()].concat();
        assert_eq!(
            flate2_gunzip_multi(&two),
            [data.clone(), data.clone()].concat()
        );
        assert_eq!(decompress(&two, u64::MAX).unwrap().len(), 2 * data.len());
        // A plain member has no index, and cannot be sealed.
        let mut plain = compress(&data, 6).unwrap();
        assert_eq!(member_index(&plain), MemberIndex::Plain);
        assert_eq!(member_index(&plain[..3]), MemberIndex::NeedMore);
        assert!(seal_index(&mut plain, 1).is_err());
        assert_eq!(member_index(b"xyz"), MemberIndex::Plain);
    }

    #[test]
    fn a_decoder_resumed_at_a_member_boundary_numbers_members_and_offsets_as_the_file() {
        let a = compress(b"first member", 6).unwrap();
        let b = compress(b"second", 6).unwrap();
        let mut dec = GzDecoder::resume(100, a.len() as u64, 1);
        let mut out = Vec::new();
        dec.write::<GzError>(&b, &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        let s = dec.finish().unwrap();
        assert_eq!(
            (s.members, s.raw_len, s.input_len),
            (2, 6, (a.len() + b.len()) as u64)
        );
        assert_eq!(s.crc32, crc32fast::hash(b"second"));
        assert_eq!(out, b"second");
        let mut bad = GzDecoder::resume(100, 1000, 3);
        let err = bad
            .write::<GzError>(b"junk", &mut |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("offset 1000") && err.contains("member 3"),
            "{err}"
        );
    }

    #[test]
    fn the_crc_of_several_members_is_the_crc_of_their_concatenation() {
        let (a, b) = (sample(70_000), sample(5));
        let two = [compress(&a, 6).unwrap(), compress(&b, 1).unwrap()].concat();
        let mut dec = GzDecoder::new(u64::MAX);
        dec.write::<GzError>(&two, &mut |_| Ok(())).unwrap();
        let s = dec.finish().unwrap();
        assert_eq!(s.crc32, crc32fast::hash(&[a, b].concat()));
    }

    #[test]
    fn empty_input_round_trips_but_empty_file_is_an_error() {
        let gz = compress(b"", 6).unwrap();
        assert_eq!(decompress(&gz, 10).unwrap(), b"");
        assert_eq!(flate2_gunzip_multi(&gz), b"");
        let err = decompress(b"", 10).unwrap_err();
        assert!(err.to_string().contains("empty input"), "{err}");
    }

    #[test]
    fn invalid_level_is_rejected() {
        assert_eq!(GzEncoder::new(10).err(), Some(GzError::InvalidLevel(10)));
    }

    #[test]
    fn flate2_written_files_decode() {
        let data = sample(100_000);
        assert_eq!(decompress(&flate2_gz(&data), u64::MAX).unwrap(), data);
    }

    #[test]
    fn concatenated_members_decode_to_the_concatenation() {
        let a = sample(50_000);
        let b = b"second member\n".to_vec();
        let mut gz = compress(&a, 9).unwrap();
        gz.extend(flate2_gz(&b));
        gz.extend(compress(b"", 1).unwrap());
        let mut want = a.clone();
        want.extend(&b);
        assert_eq!(decompress(&gz, u64::MAX).unwrap(), want);
        let mut dec = GzDecoder::new(u64::MAX);
        dec.write(&gz, &mut |_: &[u8]| Ok::<(), GzError>(()))
            .unwrap();
        let s = dec.finish().unwrap();
        assert_eq!(s.members, 3);
        assert_eq!(s.crc32, crc32fast::hash(&want));
        assert_eq!(s.raw_len, want.len() as u64);
    }

    /// Builds a member by hand with the given flags and optional fields.
    fn member_with(
        flags: u8,
        extra: Option<&[u8]>,
        name: Option<&[u8]>,
        comment: Option<&[u8]>,
        data: &[u8],
        good_hcrc: bool,
    ) -> Vec<u8> {
        let mut h = vec![0x1f, 0x8b, 8, flags, 1, 2, 3, 4, 0, 3];
        if let Some(x) = extra {
            h.extend_from_slice(&(x.len() as u16).to_le_bytes());
            h.extend_from_slice(x);
        }
        if let Some(n) = name {
            h.extend_from_slice(n);
            h.push(0);
        }
        if let Some(c) = comment {
            h.extend_from_slice(c);
            h.push(0);
        }
        if flags & FHCRC != 0 {
            let mut crc = (crc32fast::hash(&h) & 0xffff) as u16;
            if !good_hcrc {
                crc ^= 1;
            }
            h.extend_from_slice(&crc.to_le_bytes());
        }
        let body = compress(data, 6).unwrap();
        h.extend_from_slice(&body[10..]);
        h
    }

    #[test]
    fn every_header_flag_is_parsed() {
        let data = b"{\"a\":1}\n";
        let cases = [
            member_with(FTEXT, None, None, None, data, true),
            member_with(FEXTRA, Some(b"AB\x02\x00hi"), None, None, data, true),
            member_with(FEXTRA, Some(b""), None, None, data, true),
            member_with(FNAME, None, Some(b"session.jsonl"), None, data, true),
            member_with(FCOMMENT, None, None, Some(b"a comment"), data, true),
            member_with(FHCRC, None, None, None, data, true),
            member_with(
                FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT,
                Some(b"xyz"),
                Some(b"n"),
                Some(b"c"),
                data,
                true,
            ),
        ];
        for (i, gz) in cases.iter().enumerate() {
            assert_eq!(decompress(gz, 100).unwrap(), data, "case {i}");
            assert_eq!(flate2_gunzip_multi(gz), data, "flate2 agrees on case {i}");
        }
    }

    #[test]
    fn bad_header_crc_reserved_flags_and_other_methods_are_rejected() {
        let data = b"x\n";
        let bad_hcrc = member_with(FHCRC | FNAME, None, Some(b"n"), None, data, false);
        let e = decompress(&bad_hcrc, 100).unwrap_err().to_string();
        assert!(e.contains("header CRC16"), "{e}");
        for (at, byte) in [(3usize, 0x20u8), (3, 0x80), (2, 7)] {
            let mut gz = compress(data, 6).unwrap();
            gz[at] = byte;
            assert!(is_corrupt(decompress(&gz, 100)), "byte {at} = {byte:#x}");
        }
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let mut gz = member_with(
            FHCRC | FEXTRA | FNAME | FCOMMENT,
            Some(b"ex"),
            Some(b"nm"),
            Some(b"cm"),
            &sample(3000),
            true,
        );
        gz.extend(compress(b"tail\n", 6).unwrap());
        let full = decompress(&gz, u64::MAX).unwrap();
        for n in 0..gz.len() {
            let r = decompress(&gz[..n], u64::MAX);
            // A prefix ending exactly between the two members is a complete file of one member.
            if let Ok(out) = &r {
                assert_eq!(
                    out,
                    &full[..3000],
                    "only the member boundary may decode (prefix {n})"
                );
                continue;
            }
            assert!(is_corrupt(r.clone()), "prefix {n}: {r:?}");
            let msg = r.unwrap_err().to_string();
            assert!(
                msg.contains("truncated") || msg.contains("empty"),
                "prefix {n}: {msg}"
            );
        }
    }

    #[test]
    fn bit_flips_in_the_trailer_are_errors() {
        let gz = compress(&sample(5000), 6).unwrap();
        let n = gz.len();
        for i in n - 8..n {
            for bit in 0..8 {
                let mut bad = gz.clone();
                bad[i] ^= 1 << bit;
                let r = decompress(&bad, u64::MAX);
                assert!(is_corrupt(r.clone()), "byte {i} bit {bit}: {r:?}");
            }
        }
    }

    #[test]
    fn trailing_garbage_after_a_member_is_rejected_with_its_offset() {
        let gz = compress(b"data\n", 6).unwrap();
        for tail in [
            &b"\0"[..],
            b"\0\0\0\0",
            b"\x1f",
            b"\x1f\x8b",
            b"\x1f\x8b\x08",
            b"garbage",
            b"\x1f\x8b\x09\0",
        ] {
            let mut bad = gz.clone();
            bad.extend_from_slice(tail);
            let r = decompress(&bad, u64::MAX);
            let Err(GzError::Corrupt { offset, message }) = r else {
                panic!("tail {tail:?}: {r:?}")
            };
            assert!(
                offset >= gz.len() as u64,
                "tail {tail:?} reported at {offset}"
            );
            assert!(
                message.contains("trailing") || message.contains("truncated"),
                "{message}"
            );
        }
    }

    #[test]
    fn corrupt_deflate_data_is_an_error() {
        let mut gz = compress(&sample(20_000), 6).unwrap();
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 16] {
            *b ^= 0x5a;
        }
        assert!(is_corrupt(decompress(&gz, u64::MAX)));
    }

    #[test]
    fn output_limit_stops_a_bomb_early_without_buffering_it() {
        // 100 MB of zeros, compressed by flate2 streaming (about 100 KB).
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        let limit = 1u64 << 20;
        let start = std::time::Instant::now();
        let mut dec = GzDecoder::new(limit);
        let mut seen = 0u64;
        let mut biggest = 0usize;
        let r = dec.write(&bomb, &mut |c: &[u8]| {
            seen += c.len() as u64;
            biggest = biggest.max(c.len());
            Ok::<(), GzError>(())
        });
        assert_eq!(r, Err(GzError::TooLarge { limit }));
        assert!(seen <= limit, "passed {seen} bytes to the sink");
        assert!(biggest <= OUT_BUF);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
        // The decoder stays failed.
        assert_eq!(dec.finish(), Err(GzError::TooLarge { limit }));
    }

    #[test]
    fn output_exactly_at_the_limit_is_accepted() {
        let data = sample(10_000);
        assert_eq!(
            decompress(&compress(&data, 6).unwrap(), 10_000).unwrap(),
            data
        );
        assert_eq!(
            decompress(&compress(&data, 6).unwrap(), 9_999),
            Err(GzError::TooLarge { limit: 9_999 })
        );
    }

    fn decode_split(gz: &[u8], cuts: &[usize]) -> Result<Vec<u8>, GzError> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (gz.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut dec = GzDecoder::new(u64::MAX);
        let mut at = 0;
        let mut sink = |c: &[u8]| -> Result<(), GzError> {
            out.extend_from_slice(c);
            Ok(())
        };
        for cut in cuts {
            dec.write(&gz[at..cut], &mut sink)?;
            at = cut;
        }
        dec.write(&gz[at..], &mut sink)?;
        dec.finish()?;
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_split_of_the_input_gives_the_same_result(
            len in 0usize..20_000,
            cuts in proptest::collection::vec(0usize..100_000, 0..12),
            flip in proptest::option::of(0usize..100_000),
            level in 0u8..=9,
        ) {
            let data = sample(len);
            let mut gz = member_with(FHCRC | FNAME | FEXTRA, Some(b"e"), Some(b"n"), None, &data, true);
            gz.extend(compress(&data[..len / 3], level).unwrap());
            if let Some(f) = flip {
                let i = f % gz.len();
                gz[i] ^= 0x10;
            }
            let whole = decompress(&gz, u64::MAX);
            let split = decode_split(&gz, &cuts);
            prop_assert_eq!(&whole, &split);
            if flip.is_none() {
                let mut want = data.clone();
                want.extend_from_slice(&data[..len / 3]);
                prop_assert_eq!(whole.unwrap(), want);
            }
        }
    }
}
