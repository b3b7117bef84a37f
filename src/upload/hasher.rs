//! The hashing stage: one sequential read of the file, ahead of the uploaders, that
//! computes each segment's MD5 and the whole-image digests in the same pass.
//!
//! It runs only while whole-image digests remain to be computed. After every segment
//! it journals the segment's MD5 and the hashers' saved state, so a resume continues
//! from the last segment boundary instead of re-reading the file.
//!
//! Otherwise the segments' MD5s are computed here too, several segments at once in
//! SIMD lanes ([`crate::md5lanes`]): up to 8 segments are read 1 MiB at a time, round
//! robin, and hashed together for about the CPU cost of one. Segments whose MD5 is
//! already journaled pass straight through. On a CPU without SIMD lanes, or with
//! segments so large that two would not fit in the read-ahead budget, the workers
//! hash their own segments, in parallel.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use md5::{Digest, Md5};
use tokio::sync::mpsc;

use super::segment::{read_failure, source_hint};
use crate::digest::Whole;
use crate::error::{Error, Result};
use crate::journal::{Journal, SegmentRecord};
use crate::md5lanes::{Backend, Md5Stream, update_many};
use crate::source::CHUNK;
use crate::swift::ListEntry;

/// A segment ready for a worker (its MD5 known when the stage hashed it).
pub type Ready = Result<(SegmentRecord, Option<ListEntry>)>;

/// Starts the stage. `all` is every segment of the job (in order), `todo` those to
/// upload; `whole` the digests still to compute (`None`: pass `todo` through).
/// At most `ahead` segments wait, hashed, for a worker.
pub fn spawn(
    journal: Arc<Journal>,
    file: Arc<File>,
    job_id: String,
    all: Vec<SegmentRecord>,
    todo: Vec<(SegmentRecord, Option<ListEntry>)>,
    whole: Option<Whole>,
    ahead: usize,
) -> mpsc::Receiver<Ready> {
    let (tx, rx) = mpsc::channel(ahead.max(1));
    tokio::task::spawn_blocking(move || {
        let Some(whole) = whole else {
            let backend = Backend::detect();
            let seg = todo.iter().map(|(r, _)| r.length).max().unwrap_or(0);
            if backend == Backend::Scalar || lanes_for(backend, seg) < 2 {
                for item in todo {
                    if tx.blocking_send(Ok(item)).is_err() {
                        return;
                    }
                }
            } else if let Err(e) = hash_in_lanes(&journal, &file, &job_id, todo, backend, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
            return;
        };
        if let Err(e) = hash_in_order(&journal, &file, &job_id, all, todo, whole, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

fn hash_in_order(
    journal: &Journal,
    file: &File,
    job_id: &str,
    all: Vec<SegmentRecord>,
    todo: Vec<(SegmentRecord, Option<ListEntry>)>,
    mut whole: Whole,
    tx: &mpsc::Sender<Ready>,
) -> Result<()> {
    let mut todo: HashMap<u64, (SegmentRecord, Option<ListEntry>)> = todo.into_iter().map(|t| (t.0.index, t)).collect();
    let mut order: Vec<u64> = todo.keys().copied().collect();
    order.sort_unstable();
    // Segments before the digests' offset were hashed in an earlier run: straight on.
    let start = whole.offset();
    for idx in order.iter().filter(|i| all.get(**i as usize).is_some_and(|s| s.offset + s.length <= start)) {
        if let Some(item) = todo.remove(idx)
            && tx.blocking_send(Ok(item)).is_err()
        {
            return Ok(());
        }
    }
    if start > 0 {
        tracing::info!("job {job_id}: whole-image digests continue from byte {start} (saved state)");
    }
    let mut buf = vec![0u8; CHUNK];
    for seg in all.iter().filter(|s| s.offset + s.length > start) {
        if seg.offset != whole.offset() {
            return Err(Error::failed(format!(
                "job {job_id}: the saved digest state (byte {}) is not at a segment boundary",
                whole.offset()
            )));
        }
        let label = format!("segment {} of job {job_id}", seg.index);
        let mut md5 = Md5::new();
        let mut done = 0u64;
        while done < seg.length {
            if tx.is_closed() {
                return Ok(()); // the run stopped
            }
            let n = buf.len().min((seg.length - done) as usize);
            file.read_exact_at(&mut buf[..n], seg.offset + done).map_err(|e| {
                Error::failed(format!("{label}: cannot read the source: {}", read_failure(&e)))
                    .hint(source_hint(job_id))
            })?;
            md5.update(&buf[..n]);
            whole.update(&buf[..n]);
            done += n as u64;
        }
        let md5 = hex::encode(md5.finalize());
        let item = todo.remove(&seg.index);
        let known = item.as_ref().map(|(r, _)| r.md5.clone()).unwrap_or_else(|| seg.md5.clone());
        if let Some(k) = known.filter(|k| *k != md5) {
            return Err(Error::failed(format!(
                "{label}: the file changed since this segment was hashed (MD5 was {k}, is now {md5})"
            ))
            .hint(source_hint(job_id)));
        }
        journal.put_digest(&whole.checkpoint())?;
        if let Some((mut rec, hint)) = item {
            rec.md5 = Some(md5);
            journal.put_segment(&rec)?;
            if tx.blocking_send(Ok((rec, hint))).is_err() {
                return Ok(());
            }
        }
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

/// How far (in bytes) the lanes may read ahead of the uploads. Every segment is read
/// twice, to hash it and to send it; the second read should find it in the page cache.
const LANES_AHEAD: u64 = 2 << 30;

/// Lanes for segments of `seg` bytes: as many as the backend has, within
/// [`LANES_AHEAD`] (huge segments get fewer; below two, the workers hash instead).
fn lanes_for(backend: Backend, seg: u64) -> usize {
    let width = if backend == Backend::Avx2 { 8 } else { 4 };
    width.min((LANES_AHEAD / seg.max(1)) as usize)
}

/// One segment being hashed in a lane.
struct Lane {
    item: (SegmentRecord, Option<ListEntry>),
    stream: Md5Stream,
    buf: Vec<u8>,
}

/// The MD5 of every segment of `todo` that lacks one, up to `lanes` segments at a
/// time: each round reads the next 1 MiB of every segment in a lane and hashes them
/// together. A segment is journaled and handed on as soon as it is hashed, and its
/// lane takes the next one, so segments of any size keep the lanes full.
fn hash_in_lanes(
    journal: &Journal,
    file: &File,
    job_id: &str,
    todo: Vec<(SegmentRecord, Option<ListEntry>)>,
    backend: Backend,
    tx: &mpsc::Sender<Ready>,
) -> Result<()> {
    let seg = todo.iter().map(|(r, _)| r.length).max().unwrap_or(0);
    let width = lanes_for(backend, seg);
    let mut queue = todo.into_iter();
    let mut lanes: Vec<Lane> = Vec::with_capacity(width);
    let mut spare: Vec<Vec<u8>> = Vec::new();
    loop {
        while lanes.len() < width {
            match queue.next() {
                // Hashed in an earlier run: straight on.
                Some(item) if item.0.md5.is_some() => {
                    if tx.blocking_send(Ok(item)).is_err() {
                        return Ok(());
                    }
                }
                Some(item) => {
                    let buf = spare.pop().unwrap_or_else(|| vec![0u8; CHUNK]);
                    lanes.push(Lane { item, stream: Md5Stream::new(), buf });
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
        let mut lens = Vec::with_capacity(lanes.len());
        for lane in lanes.iter_mut() {
            let rec = &lane.item.0;
            let done = lane.stream.len();
            let n = (CHUNK as u64).min(rec.length - done) as usize;
            file.read_exact_at(&mut lane.buf[..n], rec.offset + done).map_err(|e| {
                Error::failed(format!(
                    "segment {} of job {job_id}: cannot read the source: {}",
                    rec.index,
                    read_failure(&e)
                ))
                .hint(source_hint(job_id))
            })?;
            lens.push(n);
        }
        {
            let (mut streams, parts): (Vec<&mut Md5Stream>, Vec<&[u8]>) =
                lanes.iter_mut().zip(&lens).map(|(l, n)| (&mut l.stream, &l.buf[..*n])).unzip();
            update_many(backend, &mut streams, &parts);
        }
        let mut i = 0;
        while i < lanes.len() {
            if lanes[i].stream.len() < lanes[i].item.0.length {
                i += 1;
                continue;
            }
            let Lane { item: (mut rec, hint), stream, buf } = lanes.remove(i);
            spare.push(buf);
            rec.md5 = Some(hex::encode(stream.finalize()));
            journal.put_segment(&rec)?;
            if tx.blocking_send(Ok((rec, hint))).is_err() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_stay_within_the_read_ahead_budget() {
        assert_eq!(lanes_for(Backend::Avx2, 256 << 20), 8);
        assert_eq!(lanes_for(Backend::Sse2, 256 << 20), 4);
        assert_eq!(lanes_for(Backend::Avx2, 1 << 30), 2);
        assert_eq!(lanes_for(Backend::Avx2, 5 << 30), 0, "5 GiB segments: the workers hash");
        assert_eq!(lanes_for(Backend::Avx2, 0), 8);
    }
}
