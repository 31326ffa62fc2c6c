//! Not a policy: miniz_oxide's level-6 deflate as a plain core module (no component, no
//! imports), so `cargo xtask bench` can time the sandbox's deflate on its own — the ceiling a
//! policy's archive reaches per core, whatever the host and the stores add.
//!
//! The loop is the kit's `GzEncoder` without the gzip framing and the CRC: input in 1 MiB
//! pieces (the kit's chunk), one 64 KiB output buffer, one `CompressorOxide` for the stream
//! (the tests check the bytes are the encoder's). The xtask links this crate natively too, so
//! the bench shows the same code compiled by LLVM beside Cranelift.

use miniz_oxide::deflate::core::{create_comp_flags_from_zip_params, CompressorOxide};
use miniz_oxide::{MZError, MZFlush, MZStatus};

/// Input handed to the compressor at once: the kit's archive chunk.
pub const CHUNK: usize = 1 << 20;

/// The output scratch buffer, the kit encoder's size.
const OUT_BUF: usize = 64 * 1024;

/// The deflate engine refused to go on (never with valid parameters), or the level is not 0..=10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateError(pub String);

/// Raw-deflates `data` at `level` in [`CHUNK`] pieces through one 64 KiB buffer, handing each
/// piece of output to `sink`; returns the compressed length.
pub fn deflate_stream(
    data: &[u8],
    level: u8,
    mut sink: impl FnMut(&[u8]),
) -> Result<usize, DeflateError> {
    if level > 10 {
        return Err(DeflateError(format!("level {level} is not 0..=10")));
    }
    // Negative window bits = raw deflate, as the kit (it writes the gzip framing itself).
    let flags = create_comp_flags_from_zip_params(i32::from(level), -15, 0);
    let mut comp = Box::new(CompressorOxide::new(flags));
    let mut buf = vec![0u8; OUT_BUF];
    let mut total = 0;
    let mut pump = |mut input: &[u8], flush: MZFlush| -> Result<(), DeflateError> {
        loop {
            let res = miniz_oxide::deflate::stream::deflate(&mut comp, input, &mut buf, flush);
            sink(&buf[..res.bytes_written]);
            total += res.bytes_written;
            input = &input[res.bytes_consumed..];
            match res.status {
                Ok(MZStatus::StreamEnd) => return Ok(()),
                Ok(_) => {
                    if flush != MZFlush::Finish && input.is_empty() && res.bytes_written < buf.len()
                    {
                        return Ok(());
                    }
                }
                Err(MZError::Buf) if flush != MZFlush::Finish && input.is_empty() => return Ok(()),
                Err(e) => return Err(DeflateError(format!("deflate engine error: {e:?}"))),
            }
        }
    };
    for piece in data.chunks(CHUNK) {
        pump(piece, MZFlush::None)?;
    }
    pump(&[], MZFlush::Finish)?;
    Ok(total)
}

/// The module's exports: the host copies its bytes into memory from `alloc` and times `deflate`.
#[cfg(target_arch = "wasm32")]
mod exports {
    /// Reserves `n` bytes for the host to copy the input into. Never freed: the bench uses one
    /// instance per measurement.
    #[no_mangle]
    pub extern "C" fn alloc(n: usize) -> *mut u8 {
        let mut v = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(n));
        v.as_mut_ptr()
    }

    /// Deflates the `n` bytes at `ptr` at `level`, discarding the output (only the work is
    /// timed); returns the compressed length, or 0 on a bad level or an engine error (a
    /// deflate stream is never empty).
    ///
    /// # Safety
    /// `ptr..ptr + n` must be initialised memory, e.g. from [`alloc`] and written by the host.
    #[no_mangle]
    pub unsafe extern "C" fn deflate(ptr: *const u8, n: usize, level: i32) -> usize {
        // SAFETY: the caller's contract above.
        let data = unsafe { std::slice::from_raw_parts(ptr, n) };
        let Ok(level) = u8::try_from(level) else {
            return 0;
        };
        super::deflate_stream(data, level, |_| {}).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_kit::gzip::GzEncoder;
    use miniz_oxide::inflate::decompress_to_vec;

    /// Agent-JSONL-like bytes that compress like the bench's corpus (repeats, some variety).
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u32 = 0x1234_5678;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let line = format!(
                "{{\"type\":\"assistant\",\"seq\":{},\"text\":\"token {} of {}\"}}\n",
                x % 1000,
                x % 97,
                x % 13
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn deflated_pieces_inflate_back_to_the_input_across_several_chunks() {
        let data = sample(2 * CHUNK + 12_345);
        let mut out = Vec::new();
        let n = deflate_stream(&data, 6, |piece| out.extend_from_slice(piece)).unwrap();
        assert_eq!(n, out.len());
        assert!(n < data.len() / 2, "{n} bytes is not compressed");
        assert_eq!(decompress_to_vec(&out).unwrap(), data);
    }

    #[test]
    fn the_probe_deflates_exactly_as_the_kit_encoder_does() {
        let data = sample(CHUNK + 777);
        let mut ours = Vec::new();
        deflate_stream(&data, 6, |piece| ours.extend_from_slice(piece)).unwrap();
        let mut enc = GzEncoder::new(6).unwrap();
        let mut gz = Vec::new();
        for piece in data.chunks(CHUNK) {
            gz.extend(enc.write(piece).unwrap());
        }
        gz.extend(enc.finish().unwrap());
        // The kit's member: 10-byte header, the deflate stream, CRC-32 and ISIZE.
        assert_eq!(&gz[10..gz.len() - 8], &ours[..]);
    }

    #[test]
    fn empty_input_is_a_complete_stream() {
        let mut out = Vec::new();
        let n = deflate_stream(&[], 6, |piece| out.extend_from_slice(piece)).unwrap();
        assert!(n > 0);
        assert_eq!(decompress_to_vec(&out).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_level_past_ten_is_refused() {
        assert!(deflate_stream(b"x", 11, |_| {}).is_err());
    }
}
