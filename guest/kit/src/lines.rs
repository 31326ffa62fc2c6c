//! Streaming count of non-blank lines, identical to the seed's `bytecount_lines`.
//!
//! The seed decodes the whole buffer lossily as UTF-8, splits on `\n` (`str::lines`) and counts the
//! lines that are not all whitespace (`str::trim`, i.e. Unicode `White_Space`). We must give the same
//! number for gigabyte files fed in chunks, so this decodes incrementally: a line becomes non-blank
//! at its first character that is not whitespace, and an invalid UTF-8 sequence counts as such (the
//! seed sees U+FFFD there). Multi-byte characters split across chunks are reassembled.

/// Counts non-blank lines over a byte stream fed in arbitrary chunks.
#[derive(Debug, Default, Clone)]
pub struct LineCounter {
    count: u64,
    /// The current line already has a non-whitespace character.
    nonblank: bool,
    /// Bytes of an incomplete multi-byte UTF-8 sequence.
    pending: [u8; 4],
    pending_len: usize,
    /// Length the pending sequence announces (2..=4), 0 when none.
    want: usize,
}

impl LineCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn mark_nonblank(&mut self) {
        if !self.nonblank {
            self.nonblank = true;
            self.count += 1;
        }
    }

    /// Resolves the pending sequence when it cannot be completed (a bad continuation byte or end).
    fn flush_invalid(&mut self) {
        if self.pending_len > 0 {
            self.pending_len = 0;
            self.want = 0;
            self.mark_nonblank();
        }
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            if self.nonblank {
                // The line already counts and nothing is pending (`start` never begins a
                // sequence on a counted line): only where the line ends matters. Skipping to it
                // a word at a time instead of decoding every byte made export ~1.5× faster.
                debug_assert_eq!(self.pending_len, 0);
                match find_newline(&data[i..]) {
                    Some(at) => {
                        self.nonblank = false;
                        i += at + 1;
                        continue;
                    }
                    None => return,
                }
            }
            let b = data[i];
            i += 1;
            if self.pending_len > 0 {
                if b & 0xc0 == 0x80 {
                    self.pending[self.pending_len] = b;
                    self.pending_len += 1;
                    if self.pending_len == self.want {
                        let is_ws = std::str::from_utf8(&self.pending[..self.pending_len])
                            .ok()
                            .and_then(|s| s.chars().next())
                            .is_some_and(char::is_whitespace);
                        self.pending_len = 0;
                        self.want = 0;
                        if !is_ws {
                            self.mark_nonblank();
                        }
                    }
                    continue;
                }
                // Not a continuation: the pending bytes were an invalid sequence (U+FFFD for the
                // seed); this byte starts afresh.
                self.flush_invalid();
            }
            match b {
                b'\n' => self.nonblank = false,
                // ASCII whitespace per `char::is_whitespace`: \t \n \x0b \x0c \r and space.
                b'\t' | b'\x0b' | b'\x0c' | b'\r' | b' ' => {}
                0x00..=0x7f => self.mark_nonblank(),
                0xc2..=0xdf => self.start(b, 2),
                0xe0..=0xef => self.start(b, 3),
                0xf0..=0xf4 => self.start(b, 4),
                // Continuation without a lead, or a byte never valid in UTF-8.
                _ => self.mark_nonblank(),
            }
        }
    }

    fn start(&mut self, b: u8, want: usize) {
        if self.nonblank {
            // The line already counts; its remaining characters cannot change anything.
            return;
        }
        self.pending[0] = b;
        self.pending_len = 1;
        self.want = want;
    }

    /// The count so far, treating the end of input as the end of the last line.
    pub fn count(&self) -> u64 {
        self.count + u64::from(self.pending_len > 0 && !self.nonblank)
    }
}

/// Index of the first `\n` in `data`, eight bytes at a time (wasm32 has no SIMD memchr).
fn find_newline(data: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut words = data.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        // A byte of `x` is zero where `word` has a newline; the classic has-a-zero-byte test.
        let x = u64::from_le_bytes(w) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return word.iter().position(|&b| b == b'\n').map(|p| base + p);
        }
        base += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| base + p)
}

/// Counts non-blank lines of a whole buffer (the seed's `bytecount_lines`).
pub fn count_lines(data: &[u8]) -> u64 {
    let mut c = LineCounter::new();
    c.update(data);
    c.count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The seed's own implementation, kept here as the oracle.
    fn seed_bytecount_lines(data: &[u8]) -> u64 {
        let text = String::from_utf8_lossy(data);
        text.lines().filter(|l| !l.trim().is_empty()).count() as u64
    }

    #[test]
    fn the_seed_cases_give_the_seed_counts() {
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"line1\n"), 1);
        assert_eq!(count_lines(b"line1\nline2\n"), 2);
        assert_eq!(count_lines(b"  \n\nline3\n"), 1);
    }

    #[test]
    fn unicode_whitespace_lines_are_blank_and_invalid_utf8_is_not() {
        let cases: &[&[u8]] = &[
            "\u{a0}\u{3000}\n\u{2028}x\n".as_bytes(),
            b"\xe3\x80\n",
            b"\xff\n \n",
            b"no newline at end",
            b"\r\n\r\n",
            b"\xe3\x80",
            "\u{85}".as_bytes(),
            b"\x0b\x0c\n",
        ];
        for c in cases {
            assert_eq!(count_lines(c), seed_bytecount_lines(c), "case {c:?}");
        }
    }

    #[test]
    fn long_mixed_text_in_any_chunk_size_gives_the_seed_count() {
        // Lines longer than the 8-byte words the newline search steps by, with multi-byte and
        // invalid sequences at every alignment.
        let atoms: &[&[u8]] = &[
            b"{\"k\":1}\n",
            b"   \n",
            "\u{3000}\u{a0}\n".as_bytes(),
            "caf\u{e9} \u{1f600} text and more text\n".as_bytes(),
            b"\xe3\x80\n",
            b"\xff\xfe tail",
            b"\n\n",
            b"x",
        ];
        let mut data = Vec::new();
        for i in 0..2_000usize {
            data.extend_from_slice(atoms[(i * 7 + i / 3) % atoms.len()]);
        }
        let want = seed_bytecount_lines(&data);
        for size in 1..=19 {
            let mut c = LineCounter::new();
            for chunk in data.chunks(size) {
                c.update(chunk);
            }
            assert_eq!(c.count(), want, "chunks of {size}");
        }
        assert_eq!(find_newline(b"0123456789\n"), Some(10));
        assert_eq!(find_newline(b"01234567"), None);
        assert_eq!(find_newline(b"\x8a\x0b\x09\n"), Some(3));
    }

    fn bytes_with_newlines() -> impl Strategy<Value = Vec<u8>> {
        let atoms: Vec<&'static [u8]> = vec![
            b"\n",
            b" ",
            b"\t",
            b"\r",
            b"a",
            b"{}",
            "\u{a0}".as_bytes(),
            "\u{3000}".as_bytes(),
            "\u{1f600}".as_bytes(),
            b"\xe3\x80",
            b"\xff",
            b"\x80",
            "\u{2029}".as_bytes(),
        ];
        proptest::collection::vec(proptest::sample::select(atoms), 0..60).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_seed_count(data in bytes_with_newlines(), cuts in proptest::collection::vec(0usize..200, 0..6)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut c = LineCounter::new();
            let mut at = 0;
            for cut in cuts {
                c.update(&data[at..cut]);
                at = cut;
            }
            c.update(&data[at..]);
            prop_assert_eq!(c.count(), seed_bytecount_lines(&data));
        }
    }
}
