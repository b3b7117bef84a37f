//! Zeros that never cross the link: holes found with `SEEK_DATA`/`SEEK_HOLE`
//! before anything is read, and runs of zero MiB blocks found while hashing.
//!
//! The unit is a whole [`BLOCK`] (1 MiB) counted from the segment's start (the
//! plan's cuts are whole MiB from the start of the file): Swift throttles GETs of
//! SLO entries under 1 MiB, so shorter runs are sent as data. A DLO pays a second
//! per segment on every read after the tenth, and each skipped run adds up to two
//! segments, so a DLO skips only runs of at least [`DLO_MIN_RUN`].

use std::fs::File;

/// Size of the blocks read for hashing and sending (the source reads in these too).
pub(crate) const CHUNK: usize = 1 << 20;

/// The zero-detection unit: runs are whole blocks from the segment's start.
pub(crate) const BLOCK: u64 = CHUNK as u64;

/// The shortest zero run a DLO skips (each skipped run can cost two extra
/// segments, a second each on every read of the object).
pub(crate) const DLO_MIN_RUN: u64 = 32 * BLOCK;

/// How a job skips zeros: runs of at least `min_run` bytes are not sent; where
/// `unit` is set, every zero piece is exactly `unit` bytes (the rest of a run is
/// sent as data), and one zero object of that length is sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZeroRule {
    /// The shortest run skipped.
    pub min_run: u64,
    /// The one length of zero pieces, on a store that cannot make zeros of any
    /// length on the server (Ceph RGW ignores SLO ranges and copies whole objects)
    /// or cannot nest manifests (zero pieces must then fit in one manifest).
    pub unit: Option<u64>,
}

/// True when every byte of `buf` is zero. Reads in 4 KiB steps whose OR-reduction
/// the compiler vectorises: far faster than MD5, so it costs little beside it.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    buf.chunks(4096).all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
}

/// `n` zero bytes from memory, in pieces of at most [`BLOCK`].
pub(crate) fn zero_pieces(n: u64) -> impl Iterator<Item = &'static [u8]> {
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    let mut left = n;
    std::iter::from_fn(move || {
        let k = left.min(BLOCK) as usize;
        left -= k as u64;
        (k > 0).then(|| &ZEROS[..k])
    })
}

/// MD5 (hex) of `n` zero bytes, computed from memory (once per length and process).
pub(crate) fn md5_of_zeros(n: u64) -> String {
    use md5::{Digest, Md5};
    static KNOWN: std::sync::Mutex<Vec<(u64, String)>> = std::sync::Mutex::new(Vec::new());
    if let Some((_, m)) = KNOWN.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(l, _)| *l == n) {
        return m.clone();
    }
    let mut h = Md5::new();
    for p in zero_pieces(n) {
        h.update(p);
    }
    let m = hex::encode(h.finalize());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if known.len() >= 64 {
        known.remove(0);
    }
    known.push((n, m.clone()));
    m
}

/// The holes of `file` (its first `size` bytes) that cover whole blocks, as
/// `(offset, length)` runs of at least `min_run`, block-aligned, in order. Empty
/// when the file system cannot tell (no `SEEK_DATA`): zeros are then found while hashing.
pub(crate) fn holes(file: &File, size: u64, min_run: u64) -> Vec<(u64, u64)> {
    let mut out = vec![];
    let mut at = 0u64;
    while at < size {
        let Some(data) = seek(file, at, libc::SEEK_DATA) else {
            // No data after `at` (ENXIO), or the call is not supported: stop asking.
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                push_hole(&mut out, at, size, size, min_run);
            }
            break;
        };
        if data > at {
            push_hole(&mut out, at, data.min(size), size, min_run);
        }
        if data >= size {
            break;
        }
        match seek(file, data, libc::SEEK_HOLE) {
            Some(h) => at = h,
            None => break,
        }
    }
    out
}

fn push_hole(out: &mut Vec<(u64, u64)>, from: u64, to: u64, size: u64, min_run: u64) {
    let start = from.next_multiple_of(BLOCK);
    // A hole that reaches the end of the file keeps its partial last block as data.
    let end = if to >= size { size / BLOCK * BLOCK } else { to / BLOCK * BLOCK };
    if end > start && end - start >= min_run.max(BLOCK) {
        out.push((start, end - start));
    }
}

fn seek(file: &File, from: u64, whence: libc::c_int) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let off = libc::off_t::try_from(from).ok()?;
    // SAFETY: lseek on a file descriptor this process owns (borrowed from `file`); it
    // moves only the descriptor's offset, which k5up never uses (all reads are pread).
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    u64::try_from(r).ok()
}

/// One piece of a segment after it was read: bytes of the file (with their MD5) or zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Offset in the file.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// `Some(md5)` for data, `None` for zeros.
    pub md5: Option<String>,
}

/// What the reader does with the chunk it just gave to [`Splitter::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Zeros, held back: not hashed (yet).
    Hold,
    /// Hash the chunk.
    Hash,
    /// The held zeros were too few to skip: hash this many zero bytes, then the chunk.
    FlushThenHash(u64),
    /// The held zeros are a run: finish the current MD5 (pass it to
    /// [`Splitter::cut`] if `close` is set, the data piece before the run), then
    /// start a new MD5 with this chunk.
    Cut {
        /// The data before the run has bytes (its MD5 is to be closed).
        close: bool,
    },
}

/// Splits a data segment, read from its start in [`BLOCK`]-sized chunks, into data
/// pieces and runs of zero blocks. Pure: the caller reads and hashes, and calls
/// [`Splitter::push`] for every chunk, [`Splitter::cut`] after each [`Push::Cut`],
/// then [`Splitter::flush_at_end`] and [`Splitter::finish`].
#[derive(Debug)]
pub(crate) struct Splitter {
    end: u64,
    pos: u64,
    /// Start of the data piece being hashed.
    data_from: u64,
    /// Start of the zero blocks held back.
    zeros_from: Option<u64>,
    /// The run found by the last [`Push::Cut`], until [`Splitter::cut`].
    run: Option<(u64, u64)>,
    min_run: u64,
    /// Zero pieces of exactly this length (see [`ZeroRule::unit`]).
    unit: Option<u64>,
    /// A last partial chunk may follow a run (the segment ends the file).
    ends_file: bool,
    pieces: Vec<Piece>,
}

impl Splitter {
    /// For the segment of `length` bytes at `offset`; runs shorter than `min_run`
    /// are hashed as data. `ends_file`: the segment ends at the end of the file.
    pub(crate) fn new(offset: u64, length: u64, rule: ZeroRule, ends_file: bool) -> Self {
        Splitter {
            end: offset + length,
            pos: offset,
            data_from: offset,
            zeros_from: None,
            run: None,
            min_run: rule.min_run.max(BLOCK).max(rule.unit.unwrap_or(0)),
            unit: rule.unit,
            ends_file,
            pieces: vec![],
        }
    }

    /// Records the run `from..to`: one zero piece, or pieces of the unit and the
    /// rest as data (whose MD5 is that of its zeros).
    fn push_run(&mut self, from: u64, to: u64) {
        let Some(u) = self.unit else {
            self.pieces.push(Piece { offset: from, length: to - from, md5: None });
            return;
        };
        let mut at = from;
        while to - at >= u {
            self.pieces.push(Piece { offset: at, length: u, md5: None });
            at += u;
        }
        if at < to {
            self.pieces.push(Piece { offset: at, length: to - at, md5: Some(md5_of_zeros(to - at)) });
        }
    }

    /// The next chunk (at most [`BLOCK`] bytes, in order from the segment's start).
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Push {
        let at = self.pos;
        self.pos += chunk.len() as u64;
        let whole = chunk.len() as u64 == BLOCK;
        if whole && is_zero(chunk) {
            self.zeros_from.get_or_insert(at);
            return Push::Hold;
        }
        let Some(z) = self.zeros_from.take() else {
            return Push::Hash;
        };
        // The data after a run must be a whole block, unless it ends the file (no
        // piece under 1 MiB but the last).
        if at - z >= self.min_run && (whole || self.ends_file) {
            self.run = Some((z, at));
            Push::Cut { close: self.data_from < z }
        } else {
            Push::FlushThenHash(at - z)
        }
    }

    /// After [`Push::Cut`]: `md5` closes the data piece before the run (when `close`
    /// was set); the run is recorded and a new data piece starts with the chunk.
    pub(crate) fn cut(&mut self, md5: Option<String>) {
        let Some((z, at)) = self.run.take() else { return };
        if let Some(m) = md5.filter(|_| self.data_from < z) {
            self.pieces.push(Piece { offset: self.data_from, length: z - self.data_from, md5: Some(m) });
        }
        self.push_run(z, at);
        self.data_from = at;
    }

    /// At the end of the segment: zero bytes held back that do not make a run and
    /// must be hashed before [`Splitter::finish`] (0 if none).
    pub(crate) fn flush_at_end(&mut self) -> u64 {
        match self.zeros_from {
            Some(z) if self.end - z < self.min_run => {
                self.zeros_from = None;
                self.end - z
            }
            _ => 0,
        }
    }

    /// True when the MD5 being computed covers bytes (a data piece is open).
    pub(crate) fn has_data(&self) -> bool {
        self.data_from < self.zeros_from.unwrap_or(self.end)
    }

    /// The pieces, in order, covering the segment; `md5` is the open data piece's
    /// (ignored when [`Splitter::has_data`] is false).
    pub(crate) fn finish(mut self, md5: Option<String>) -> Vec<Piece> {
        let data_end = self.zeros_from.unwrap_or(self.end);
        if self.data_from < data_end {
            self.pieces.push(Piece { offset: self.data_from, length: data_end - self.data_from, md5 });
        }
        if data_end < self.end {
            self.push_run(data_end, self.end);
        }
        self.pieces
    }
}

/// Reads and hashes `len` bytes at `off` of `file`, split into data pieces and zero
/// runs as `rule` says (`None`: no zeros skipped, one piece). Blocking.
pub(crate) fn scan_range(
    file: &File,
    off: u64,
    len: u64,
    rule: Option<ZeroRule>,
    ends_file: bool,
) -> std::io::Result<Vec<Piece>> {
    use md5::{Digest, Md5};
    use std::os::unix::fs::FileExt;
    let mut split = rule.map(|r| Splitter::new(off, len, r, ends_file));
    let mut h = Md5::new();
    let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
    let mut done = 0u64;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        file.read_exact_at(&mut buf[..n], off + done)?;
        done += n as u64;
        match split.as_mut().map_or(Push::Hash, |s| s.push(&buf[..n])) {
            Push::Hold => {}
            Push::Hash => h.update(&buf[..n]),
            Push::FlushThenHash(z) => {
                zero_pieces(z).for_each(|p| h.update(p));
                h.update(&buf[..n]);
            }
            Push::Cut { close } => {
                let done_h = std::mem::replace(&mut h, Md5::new());
                let md5 = close.then(|| hex::encode(done_h.finalize()));
                if let Some(s) = split.as_mut() {
                    s.cut(md5);
                }
                h.update(&buf[..n]);
            }
        }
    }
    let Some(mut s) = split else {
        return Ok(vec![Piece { offset: off, length: len, md5: Some(hex::encode(h.finalize())) }]);
    };
    zero_pieces(s.flush_at_end()).for_each(|p| h.update(p));
    let md5 = s.has_data().then(|| hex::encode(h.finalize()));
    Ok(s.finish(md5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(data: &[u8]) -> String {
        use md5::Digest;
        hex::encode(md5::Md5::digest(data))
    }
    use std::io::Write;

    const M: u64 = BLOCK;

    fn rule(min_run: u64) -> ZeroRule {
        ZeroRule { min_run, unit: None }
    }

    #[test]
    fn a_unit_cuts_runs_into_pieces_of_it_and_sends_the_rest_as_data() {
        // 1 MiB data, 7 MiB zeros, 1 MiB data, 2 MiB zeros (ends the file); unit 2 MiB.
        let (t, _) = file_of(&[(1, 7), (7, 0), (1, 9), (2, 0)], b"");
        let f = t.as_file();
        let p = scan_range(f, 0, 11 * M, Some(ZeroRule { min_run: M, unit: Some(2 * M) }), true).unwrap();
        let shape: Vec<(u64, u64, bool)> = p.iter().map(|p| (p.offset / M, p.length / M, p.md5.is_none())).collect();
        assert_eq!(
            shape,
            [(0, 1, false), (1, 2, true), (3, 2, true), (5, 2, true), (7, 1, false), (8, 1, false), (9, 2, true)]
        );
        assert_eq!(p[4].md5.as_deref(), Some(md5_of_zeros(M).as_str()), "the rest of a run is data: its zeros");
        // A run under the unit is data (hashed with its neighbours).
        let p = scan_range(f, 0, 11 * M, Some(ZeroRule { min_run: M, unit: Some(8 * M) }), true).unwrap();
        assert_eq!(p.len(), 1);
    }

    /// A file from (length in MiB, fill byte) runs, and its bytes.
    fn file_of(runs: &[(u64, u8)], tail: &[u8]) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut data = vec![];
        for &(mib, b) in runs {
            data.extend(std::iter::repeat_n(b, (mib * M) as usize));
        }
        data.extend_from_slice(tail);
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(&data).unwrap();
        (t, data)
    }

    fn summary(p: &[Piece]) -> Vec<(u64, u64, bool)> {
        p.iter().map(|p| (p.offset / M, p.length / M, p.md5.is_some())).collect()
    }

    #[test]
    fn zero_runs_are_cut_out_and_data_md5s_cover_only_data() {
        let (t, data) = file_of(&[(2, 7), (3, 0), (1, 9), (1, 0), (1, 5), (2, 0)], &[]);
        let f = t.as_file();
        let p = scan_range(f, 0, 10 * M, Some(rule(M)), true).unwrap();
        assert_eq!(
            summary(&p),
            vec![(0, 2, true), (2, 3, false), (5, 1, true), (6, 1, false), (7, 1, true), (8, 2, false)]
        );
        for piece in p.iter().filter(|p| p.md5.is_some()) {
            let r = &data[piece.offset as usize..(piece.offset + piece.length) as usize];
            assert_eq!(piece.md5.as_deref(), Some(md5_hex(r).as_str()));
        }
        // Runs shorter than the minimum stay in the data (hashed, zeros included).
        let p = scan_range(f, 0, 10 * M, Some(rule(2 * M)), true).unwrap();
        assert_eq!(summary(&p), vec![(0, 2, true), (2, 3, false), (5, 3, true), (8, 2, false)]);
        assert_eq!(p[2].md5.as_deref(), Some(md5_hex(&data[5 * M as usize..8 * M as usize]).as_str()));
        // No splitting asked: one piece, the plain MD5.
        let p = scan_range(f, 0, 10 * M, None, true).unwrap();
        assert_eq!(p, vec![Piece { offset: 0, length: 10 * M, md5: Some(md5_hex(&data)) }]);
    }

    #[test]
    fn all_zero_and_partial_tails() {
        let (t, data) = file_of(&[(3, 0)], &[1, 2, 3]);
        let f = t.as_file();
        let size = data.len() as u64;
        // The last partial chunk after a run: cut only when the segment ends the file.
        let p = scan_range(f, 0, size, Some(rule(M)), true).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].offset, p[0].length, p[0].md5.is_none()), (0, 3 * M, true));
        assert_eq!((p[1].offset, p[1].length), (3 * M, 3));
        assert_eq!(p[1].md5.as_deref(), Some(md5_hex(&[1, 2, 3]).as_str()));
        let p = scan_range(f, 0, size, Some(rule(M)), false).unwrap();
        assert_eq!(p, vec![Piece { offset: 0, length: size, md5: Some(md5_hex(&data)) }]);
        // A segment of zeros only is one zero piece.
        let p = scan_range(f, M, 2 * M, Some(rule(M)), false).unwrap();
        assert_eq!(p, vec![Piece { offset: M, length: 2 * M, md5: None }]);
        assert!(is_zero(&[0; 5000]) && !is_zero(&[0, 0, 0, 1]));
        assert_eq!(md5_of_zeros(5), md5_hex(&[0; 5]));
        assert_eq!(zero_pieces(2 * M + 1).map(<[u8]>::len).collect::<Vec<_>>(), vec![M as usize, M as usize, 1]);
    }

    #[test]
    fn holes_are_found_without_reading_and_rounded_inward() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let f = t.as_file();
        // data at [1.5 MiB, 1.5 MiB + 10) and [6 MiB, 6 MiB + 10); 9 MiB long.
        f.set_len(9 * M).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"0123456789", 3 * M / 2).unwrap();
        f.write_all_at(b"0123456789", 6 * M).unwrap();
        f.sync_all().unwrap();
        let h = holes(f, 9 * M, M);
        if h.is_empty() {
            return; // a file system without SEEK_HOLE (tmpfs has it; some do not)
        }
        assert_eq!(h, vec![(0, M), (2 * M, 4 * M), (7 * M, 2 * M)]);
        assert_eq!(holes(f, 9 * M, 3 * M), vec![(2 * M, 4 * M)]);
    }
}
