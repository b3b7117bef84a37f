//! The hashing stage, ahead of the uploaders.
//!
//! Segment MD5s are computed several segments at once in SIMD lanes
//! ([`crate::md5lanes`]): up to 8 segments are read 1 MiB at a time, round robin, and
//! hashed together for about the CPU cost of one. Segments whose MD5 is already
//! journaled pass straight through. On a CPU without SIMD lanes, or with segments so
//! large that two would not fit in the read-ahead budget, the workers hash their own
//! segments, in parallel.
//!
//! Whole-image digests (SHA-1, SHA-512, ...) need the bytes in file order: a second
//! thread reads the file sequentially for them, beside the lanes (it reads what the
//! lanes have just read, from the page cache). It journals the hashers' saved state at
//! every segment boundary, so a resume continues from there instead of re-reading the
//! file. The uploads never wait for it; the stage ends when both are done.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::failure::{read_failure, source_hint};
use crate::digest::Whole;
use crate::error::{Error, Result};
use crate::journal::{Journal, SegKind, SegmentRecord};
use crate::md5lanes::{Backend, Lanes, Md5Stream, update_many};
use crate::names::SegmentNaming;
use crate::source::CHUNK;
use crate::swift::ListEntry;
use crate::units::format_size;
use crate::zeros::{Piece, Push, Splitter, zero_pieces};

/// A segment ready for a worker (its MD5 known when the stage hashed it).
pub(crate) type Ready = Result<(SegmentRecord, Option<ListEntry>)>;

/// What the stage reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    /// The job's journal (MD5s and digest states are journaled as they are known).
    pub journal: Arc<Journal>,
    /// The source.
    pub file: Arc<File>,
    /// The job id, for messages.
    pub job_id: String,
    /// Segment names, for messages.
    pub naming: SegmentNaming,
    /// Zero runs of at least this many bytes are cut out of data segments and not
    /// sent (`None`: every byte is sent).
    pub zero_rule: Option<crate::zeros::ZeroRule>,
    /// The source's size (a segment that ends the file may end in a short piece).
    pub file_size: u64,
    /// Counts the pieces of split segments.
    pub progress: Arc<crate::transfer::progress::Progress>,
    /// The page cache this process can count on ([`crate::memory::page_cache_room`],
    /// read once per run): how far the lanes may read ahead.
    pub page_cache_room: Option<u64>,
    /// What the server held under the job's prefix when the run began (see [`super::Ctx::listed`]).
    pub listed: Arc<std::collections::HashMap<(u64, u64), ListEntry>>,
    /// When segments are hashed while sent: the whole-image digests read each byte
    /// after the body that sends it (see [`super::shared_reads`]).
    pub shared_reads: Option<Arc<super::shared_reads::SharedReads>>,
}

impl Stage {
    /// The splitter of a data segment, when zeros are skipped.
    fn splitter(&self, rec: &SegmentRecord) -> Option<Splitter> {
        let ends_file = rec.offset + rec.length == self.file_size;
        self.zero_rule.map(|r| Splitter::new(rec.offset, rec.length, r, ends_file))
    }

    /// Journals the pieces a segment was split into (the first keeps the segment's
    /// key and counters) in one batch, and returns their records.
    pub(crate) fn split_into(&self, rec: SegmentRecord, pieces: Vec<Piece>) -> Result<Vec<SegmentRecord>> {
        let recs = pieces_to_records(rec, pieces);
        self.progress.pieces(&recs);
        if recs.len() == 1 {
            self.journal.put_segment(&recs[0])?;
        } else {
            self.journal.apply(&recs, &[])?;
            tracing::debug!(
                "job {}: segment at byte {} holds zero runs: {} pieces",
                self.job_id,
                recs[0].offset,
                recs.len()
            );
        }
        Ok(recs)
    }
}

/// The records of the pieces of `rec` (data with MD5, or zeros).
pub(crate) fn pieces_to_records(rec: SegmentRecord, pieces: Vec<Piece>) -> Vec<SegmentRecord> {
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let kind = if p.md5.is_some() { SegKind::Data } else { SegKind::Zero };
            let base = if i == 0 { rec.clone() } else { SegmentRecord::at(p.offset, p.length) };
            SegmentRecord { length: p.length, md5: p.md5, kind, inflight: 0, ..base }
        })
        .collect()
}

/// Starts the stage. `all` is every segment of the job (in order), `todo` those to
/// upload; `whole` the digests still to compute (`None`: pass `todo` through).
/// At most `ahead` segments wait, hashed, for a worker.
pub(crate) fn spawn(
    stage: Stage,
    all: Vec<SegmentRecord>,
    todo: Vec<(SegmentRecord, Option<ListEntry>)>,
    whole: Option<Whole>,
    ahead: usize,
) -> mpsc::Receiver<Ready> {
    let (tx, rx) = mpsc::channel(ahead.max(1));
    let frontier = Frontier::default();
    if let Some(whole) = whole {
        let (stage, tx) = (stage.clone(), tx.clone());
        let frontier = frontier.clone();
        tokio::task::spawn_blocking(move || {
            // However the digests end, the bodies stop waiting for them.
            let _close = super::shared_reads::CloseOnDrop(stage.shared_reads.clone());
            if let Err(e) = whole_digests(&stage, &all, whole, &frontier, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
    }
    tokio::task::spawn_blocking(move || {
        // However the lanes end (done, stopped, an error, a panic), the digests go on.
        let _open = OpenOnDrop(frontier.clone());
        let backend = Backend::from_env().unwrap_or_else(|_| Backend::best()); // checked at start-up
        let seg = todo.iter().map(|(r, _)| r.length).max().unwrap_or(0);
        let room = stage.page_cache_room;
        let ahead = read_ahead(room);
        let lanes = lanes_for(backend.width(), seg, ahead);
        let how = if lanes >= 2 {
            format!("{lanes} segments at a time in SIMD lanes")
        } else {
            "none: each upload hashes its own segment".into()
        };
        let why = match room {
            Some(r) => format!(
                "the lesser of {} and half the {} of page cache this process can count on",
                format_size(LANES_AHEAD),
                format_size(r)
            ),
            None => format!("{}: the memory available is unknown", format_size(LANES_AHEAD)),
        };
        tracing::debug!(
            "job {}: hashing ahead of the uploads: {how}; at most {} read ahead ({why})",
            stage.job_id,
            format_size(ahead)
        );
        if backend.lanes() == Lanes::Scalar || lanes < 2 {
            frontier.open();
            for item in todo {
                if tx.blocking_send(Ok(item)).is_err() {
                    return;
                }
            }
        } else if let Err(e) = hash_in_lanes(&stage, todo, backend, lanes, &frontier, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// How far into the file the lanes have read. The whole-image digests keep within
/// [`DIGEST_SLACK`] of it, so the file is read once from disk and the other read of
/// the same bytes comes from the page cache.
/// How far the lanes have read; the digest thread waits on its condition variable
/// (woken at every advance) instead of polling.
#[derive(Clone, Default)]
struct Frontier(Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>);

struct OpenOnDrop(Frontier);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// How far the whole-image digests may read past the lanes.
const DIGEST_SLACK: u64 = 64 << 20;

impl Frontier {
    fn advance(&self, to: u64) {
        let (m, cv) = &*self.0;
        let mut f = m.lock().unwrap_or_else(|e| e.into_inner());
        if to > *f {
            *f = to;
            cv.notify_all();
        }
    }
    /// No more limit (the lanes are done, or not running).
    fn open(&self) {
        self.advance(u64::MAX);
    }
    /// Waits until `end` is within reach; false if the run stopped meanwhile (a
    /// closed channel wakes no one: the wait looks at it every 200 ms).
    fn wait_for(&self, end: u64, tx: &mpsc::Sender<Ready>) -> bool {
        let (m, cv) = &*self.0;
        let mut f = m.lock().unwrap_or_else(|e| e.into_inner());
        while f.saturating_add(DIGEST_SLACK) < end {
            if tx.is_closed() {
                return false;
            }
            f = cv.wait_timeout(f, std::time::Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// The whole-image digests: one sequential read from the saved state's offset,
/// journaling the state at every segment boundary.
fn whole_digests(
    stage: &Stage,
    all: &[SegmentRecord],
    mut whole: Whole,
    frontier: &Frontier,
    tx: &mpsc::Sender<Ready>,
) -> Result<()> {
    let (journal, file, job_id) = (&*stage.journal, &*stage.file, stage.job_id.as_str());
    let start = whole.offset();
    if start > 0 {
        tracing::info!("job {job_id}: whole-image digests continue from byte {start} (saved state)");
    }
    let mut buf = vec![0u8; CHUNK];
    for seg in all.iter().filter(|s| s.offset + s.length > start) {
        // The state may have been saved at a boundary of other cuts (before a split,
        // or before reconciliation adopted a larger segment): continue mid-segment.
        let mut done = whole.offset().saturating_sub(seg.offset);
        if seg.offset + done != whole.offset() {
            return Err(Error::failed(format!(
                "job {job_id}: the saved digest state (byte {}) is not where the segments continue (byte {})",
                whole.offset(),
                seg.offset
            )));
        }
        if seg.is_zero() {
            // Zeros (a hole, or a run cut out earlier): from memory, not read.
            if tx.is_closed() {
                return Ok(());
            }
            zero_pieces(seg.length - done).for_each(|p| whole.update(p));
            done = seg.length;
        }
        while done < seg.length {
            let mut n = buf.len().min((seg.length - done) as usize);
            if tx.is_closed() || !frontier.wait_for(seg.offset + done + n as u64, tx) {
                return Ok(()); // the run stopped
            }
            if let Some(s) = &stage.shared_reads {
                // Bytes still to be sent: after their body has read them.
                n = s.digest_read(seg.offset + done, n as u64, &|| tx.is_closed()) as usize;
                if n == 0 {
                    return Ok(()); // the run stopped
                }
            }
            read_at(file, &mut buf[..n], seg.offset + done, &stage.naming.label(seg), job_id)?;
            whole.update(&buf[..n]);
            if stage.shared_reads.is_some() {
                // Read by its body and by the digests: what the page cache should drop
                // first (it would keep these, read twice, over those read once so far).
                crate::source::done_with(file, seg.offset + done, n as u64);
            }
            done += n as u64;
        }
        journal.put_digest(&whole.checkpoint())?;
    }
    let done = whole.finish();
    journal.put_digest(&done)?;
    journal.flush()?;
    tracing::info!(
        "job {job_id}: whole-image digests: {}",
        done.values.iter().map(|(a, v)| format!("{a} {v}")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Fills `buf` from `off`; a failure names the segment and says it is the file's.
fn read_at(file: &File, buf: &mut [u8], off: u64, segment: &str, job_id: &str) -> Result<()> {
    file.read_exact_at(buf, off).map_err(|e| {
        Error::failed(format!("{segment} of job {job_id}: cannot read the source at byte {off}: {}", read_failure(&e)))
            .hint(source_hint(job_id))
            .caused_by(e)
    })
}

/// How far (in bytes) the lanes may read ahead of the uploads at most. Every segment
/// is read twice, to hash it and to send it; the second read should find it in the
/// page cache.
const LANES_AHEAD: u64 = 2 << 30;

/// How far the lanes may read ahead given `room`, the page cache this process can
/// count on ([`crate::memory::page_cache_room`]): half of it (the other half holds
/// the segments hashed and being sent), at most [`LANES_AHEAD`].
fn read_ahead(room: Option<u64>) -> u64 {
    room.map_or(LANES_AHEAD, |r| (r / 2).min(LANES_AHEAD))
}

/// Whether segments the lanes leave unhashed should be hashed while they are sent:
/// when the lanes cannot run (too little page cache for two segments ahead), and
/// `concurrency` segments of `seg` bytes, hashed and then sent, would not fit in
/// half the page cache `room` either, so that each would be read from storage twice.
pub(crate) fn hash_while_sending(seg: u64, concurrency: usize, room: Option<u64>) -> bool {
    let width = Backend::from_env().unwrap_or_else(|_| Backend::best()).width();
    lanes_for(width, seg, read_ahead(room)) < 2
        && room.is_some_and(|r| seg.saturating_mul(concurrency.max(1) as u64) > r / 2)
}

/// Lanes for segments of `seg` bytes: as many as the backend has, within `ahead`
/// bytes (huge segments get fewer; below two, the workers hash instead).
fn lanes_for(width: usize, seg: u64, ahead: u64) -> usize {
    width.min((ahead / seg.max(1)) as usize)
}

/// One segment being hashed in a lane.
struct Lane {
    item: (SegmentRecord, Option<ListEntry>),
    stream: Md5Stream,
    buf: Vec<u8>,
    /// Bytes of the segment read so far.
    read: u64,
    /// Cuts zero runs out of the segment, when zeros are skipped.
    split: Option<Splitter>,
}

/// The MD5 of every segment of `todo` that lacks one, up to `lanes` segments at a
/// time: each round reads the next 1 MiB of every segment in a lane and hashes them
/// together. A segment is journaled and handed on as soon as it is hashed, and its
/// lane takes the next one, so segments of any size keep the lanes full.
fn hash_in_lanes(
    stage: &Stage,
    todo: Vec<(SegmentRecord, Option<ListEntry>)>,
    backend: Backend,
    width: usize,
    frontier: &Frontier,
    tx: &mpsc::Sender<Ready>,
) -> Result<()> {
    let (file, job_id) = (&*stage.file, stage.job_id.as_str());
    let seg = todo.iter().map(|(r, _)| r.length).max().unwrap_or(0);
    let mut queue = todo.into_iter();
    let mut lanes: Vec<Lane> = Vec::with_capacity(width);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    // Lanes start staggered, each 1/width of a segment after the one before: the first
    // segment is ready after one segment's worth of rounds (which cost less with fewer
    // lanes), and from then on one finishes every 1/width of a segment, instead of
    // `width` at once after a long wait.
    // Whole rounds only: small segments (a few MiB) fill every lane at once.
    let stagger = seg / CHUNK as u64 / width.max(1) as u64 * CHUNK as u64;
    loop {
        while lanes.len() < width && lanes.last().is_none_or(|l| l.stream.len() >= stagger) {
            match queue.next() {
                // Hashed in an earlier run, or zeros: straight on.
                Some(item) if item.0.md5.is_some() || item.0.is_zero() => {
                    if tx.blocking_send(Ok(item)).is_err() {
                        return Ok(());
                    }
                }
                Some(item) => {
                    // Segments before it are confirmed or hashed: the digests may read them.
                    frontier.advance(item.0.offset);
                    let buf = spare.pop().unwrap_or_else(|| vec![0u8; CHUNK]);
                    let split = stage.splitter(&item.0);
                    lanes.push(Lane { item, stream: Md5Stream::new(), buf, read: 0, split });
                }
                None => break,
            }
        }
        if lanes.is_empty() {
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(()); // the run stopped
        }
        // Bytes of each lane's chunk to hash this round (0: zeros held back).
        let mut lens = Vec::with_capacity(lanes.len());
        for lane in lanes.iter_mut() {
            let rec = &lane.item.0;
            let done = lane.read;
            let n = (CHUNK as u64).min(rec.length - done) as usize;
            read_at(file, &mut lane.buf[..n], rec.offset + done, &stage.naming.label(rec), job_id)?;
            lane.read += n as u64;
            frontier.advance(rec.offset + done + n as u64);
            let push = lane.split.as_mut().map_or(Push::Hash, |s| s.push(&lane.buf[..n]));
            lens.push(match push {
                Push::Hold => 0,
                Push::Hash => n,
                Push::FlushThenHash(z) => {
                    zero_pieces(z).for_each(|p| lane.stream.update(p));
                    n
                }
                Push::Cut { close } => {
                    let done = std::mem::take(&mut lane.stream);
                    let md5 = close.then(|| hex::encode(done.finalize()));
                    if let Some(s) = lane.split.as_mut() {
                        s.cut(md5);
                    }
                    n
                }
            });
        }
        {
            // Lanes holding zeros back sit this round out (an empty part would keep
            // every lane out of SIMD).
            let (mut streams, parts): (Vec<&mut Md5Stream>, Vec<&[u8]>) = lanes
                .iter_mut()
                .zip(&lens)
                .filter(|(_, n)| **n > 0)
                .map(|(l, n)| (&mut l.stream, &l.buf[..*n]))
                .unzip();
            if !streams.is_empty() {
                update_many(backend, &mut streams, &parts);
            }
        }
        let mut i = 0;
        while i < lanes.len() {
            if lanes[i].read < lanes[i].item.0.length {
                i += 1;
                continue;
            }
            let Lane { item: (rec, hint), mut stream, buf, split, .. } = lanes.remove(i);
            spare.push(buf);
            let pieces = match split {
                None => {
                    vec![Piece { offset: rec.offset, length: rec.length, md5: Some(hex::encode(stream.finalize())) }]
                }
                Some(mut s) => {
                    zero_pieces(s.flush_at_end()).for_each(|p| stream.update(p));
                    let md5 = s.has_data().then(|| hex::encode(stream.finalize()));
                    s.finish(md5)
                }
            };
            let whole = pieces.len() == 1;
            for r in stage.split_into(rec, pieces)? {
                // What the server held under the old name fits only the unsplit segment.
                let hint = if whole { hint.clone() } else { stage.listed.get(&(r.offset, r.length)).cloned() };
                if tx.blocking_send(Ok((r, hint))).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_stay_within_the_read_ahead_budget() {
        let a = LANES_AHEAD;
        assert_eq!(lanes_for(8, 256 << 20, a), 8);
        assert_eq!(lanes_for(4, 256 << 20, a), 4);
        assert_eq!(lanes_for(8, 1 << 30, a), 2);
        assert_eq!(lanes_for(8, 5 << 30, a), 0, "5 GiB segments: the workers hash");
        assert_eq!(lanes_for(8, 0, a), 8);
        // A 768 MiB cgroup: no further ahead than half its page cache.
        assert_eq!(read_ahead(Some(768 << 20)), 384 << 20);
        assert_eq!(read_ahead(Some(64 << 30)), LANES_AHEAD);
        assert_eq!(read_ahead(None), LANES_AHEAD);
        assert_eq!(lanes_for(16, 64 << 20, read_ahead(Some(768 << 20))), 6);
    }
}
