//! One segment: hash → (adopt if the server already holds it whole) → PUT with its
//! MD5 as `ETag` → verify the returned ETag → journal it durably.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::body::{Meter, segment_body, stalled};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Journal, SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::progress::Progress;
use crate::retry::{self, Class};
use crate::swift::{ListEntry, Origin, Swift, SwiftError};

/// What every segment task shares.
#[derive(Debug)]
pub struct Ctx {
    /// The storage client.
    pub swift: Swift,
    /// The job's journal.
    pub journal: Arc<Journal>,
    /// The source, opened once.
    pub file: Arc<File>,
    /// Segment names.
    pub naming: SegmentNaming,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// A PUT with no progress for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// The job id, for messages.
    pub job_id: String,
    /// The source's size when the job was created: a file that grew or shrank is refused.
    pub file_size: u64,
    /// The plan's (largest) segment size.
    pub segment_size: u64,
    /// `--bwlimit`, shared by every body.
    pub pacer: Option<Arc<super::pace::Pacer>>,
    /// How large a segment the link carries (splits segments on a link that breaks).
    pub sizer: super::sizer::Sizer,
    /// The rest of a split segment goes back to the pool through this.
    pub requeue: tokio::sync::mpsc::UnboundedSender<(SegmentRecord, Option<ListEntry>)>,
}

/// How a segment got confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent by this run.
    Sent,
    /// Found whole on the server (MD5 and size match): not sent again.
    Adopted,
}

/// Hashes `len` bytes at `off` on a blocking thread.
pub async fn hash_range(file: Arc<File>, off: u64, len: u64) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || crate::source::md5_range(&file, off, len))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

async fn save(journal: &Arc<Journal>, rec: SegmentRecord, flush: bool) -> Result<()> {
    let j = journal.clone();
    tokio::task::spawn_blocking(move || {
        j.put_segment(&rec)?;
        if flush { j.flush() } else { Ok(()) }
    })
    .await
    .map_err(|e| Error::failed(format!("journal task failed: {e}")))?
}

/// Settles an attempt's byte count in the segment record, also when the attempt
/// is dropped (Ctrl-C, another segment's fatal error) before it finished.
struct Attempt<'a> {
    ctx: &'a Ctx,
    rec: &'a Mutex<SegmentRecord>,
    meter: Arc<Meter>,
    settled: bool,
}

impl Attempt<'_> {
    fn settle(&mut self) -> u64 {
        let sent = Progress::get(&self.meter.sent);
        if !self.settled {
            self.settled = true;
            let mut r = self.rec.lock().expect("segment lock");
            r.sent += sent;
            r.inflight = 0;
        }
        sent
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let sent = self.settle();
            self.ctx.progress.bytes_wasted.fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            let rec = self.rec.lock().expect("segment lock").clone();
            // Made durable by the run's final flush; off the async worker meanwhile.
            let _ = crate::engine::blocking(|| self.ctx.journal.put_segment(&rec));
        }
    }
}

/// What one round of sending a segment ended in.
enum Step {
    /// Sent and its ETag checked.
    Sent,
    /// Cut off by an outage, and now larger than the link carries: split it.
    Split,
}

/// Uploads one segment (or adopts it), and journals it as confirmed. On a link that
/// breaks, the segment is first cut to what the link carries ([`Ctx::cut`]): this
/// task goes on with the head, the rest goes back to the pool.
pub async fn process(ctx: Arc<Ctx>, seg: SegmentRecord, on_server: Option<ListEntry>) -> Result<Outcome> {
    let mut seg = seg;
    let mut listed = on_server;
    // After a transport failure (reset, refused, stalled) the link may be down: probe it
    // with a cheap HEAD before sending a whole segment body into it again.
    let probe_first = Mutex::new(false);
    loop {
        // 1. A segment the server may hold whole is checked as it is; any other is
        //    first cut to what the link carries.
        if listed.as_ref().is_none_or(|e| e.bytes != seg.length) {
            listed = None;
            seg = ctx.cut(seg).await?;
        }
        let label = format!("{} of job {}", ctx.naming.label(&seg), ctx.job_id);
        let (off, len) = (seg.offset, seg.length);

        // 2. The MD5 must be known before the PUT: it goes in the ETag header.
        let md5 = match seg.md5.clone() {
            Some(m) => m,
            None => {
                let m = hash_range(ctx.file.clone(), off, len).await.map_err(|e| {
                    Error::failed(format!("{label}: cannot read the source: {}", read_failure(&e)))
                        .hint(source_hint(&ctx.job_id))
                })?;
                seg.md5 = Some(m.clone());
                save(&ctx.journal, seg.clone(), false).await?;
                m
            }
        };

        // 3. Already on the server, whole? (a PUT that completed before a crash, or a lost journal)
        if listed.take().is_some_and(|e| e.hash == md5 && e.bytes == len) {
            tracing::debug!("{label}: already on the server with MD5 {md5}: adopted");
            return confirm(&ctx, seg, Outcome::Adopted).await;
        }

        // 4. PUT with retries.
        let rec = Mutex::new(seg);
        let step = send(&ctx, &rec, &label, &md5, &probe_first).await;
        seg = rec.into_inner().expect("segment lock");
        match step? {
            Step::Sent => return confirm(&ctx, seg, Outcome::Sent).await,
            Step::Split => continue,
        }
    }
}

impl Ctx {
    /// The bytes sent by this run, the streams in flight and the run's seconds so
    /// far: what the sizer reads.
    fn link_counters(&self) -> (u64, u64, f64) {
        let p = &self.progress;
        (Progress::get(&p.run_bytes_sent), Progress::get(&p.in_flight).max(1), p.started.elapsed().as_secs_f64())
    }

    /// Cuts `seg` to the size the link has lately carried whole, if it is larger:
    /// returns the head (the same offset), journals both pieces at once, and hands
    /// the rest back to the pool. The head keeps the segment's attempts and bytes sent.
    async fn cut(&self, seg: SegmentRecord) -> Result<SegmentRecord> {
        let (sent, streams, secs) = self.link_counters();
        let Some(size) = self.naming.ranged.then(|| self.sizer.cut(seg.length, sent, streams, secs)).flatten() else {
            return Ok(seg);
        };
        let head = SegmentRecord { length: size, md5: None, inflight: 0, ..seg.clone() };
        let rest = SegmentRecord {
            index: seg.offset + size,
            offset: seg.offset + size,
            length: seg.length - size,
            md5: None,
            state: SegState::Pending,
            attempts: 0,
            sent: 0,
            inflight: 0,
        };
        tracing::info!(
            "job {}: {} split: {} now, the rest ({}) later, as the link lately carries about that much between outages",
            self.job_id,
            self.naming.label(&seg),
            crate::units::format_size(size),
            crate::units::format_size(rest.length)
        );
        let (j, pieces) = (self.journal.clone(), [head.clone(), rest.clone()]);
        tokio::task::spawn_blocking(move || j.apply(&pieces, &[]))
            .await
            .map_err(|e| Error::failed(format!("journal task failed: {e}")))??;
        self.progress.splits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.segments_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.requeue.send((rest, None));
        Ok(head)
    }

    fn link_failed(&self) {
        self.progress.link_failed();
        let (sent, streams, _) = self.link_counters();
        self.sizer.broke(sent, streams);
    }

    fn link_ok(&self) {
        self.progress.link_ok();
        self.sizer.answered(self.link_counters().0);
    }
}

/// Sends one segment, retrying, until its ETag is checked; or stops early with
/// [`Step::Split`] when an outage cut it off and it no longer fits the link.
async fn send(
    ctx: &Ctx,
    rec: &Mutex<SegmentRecord>,
    label: &str,
    md5: &str,
    probe_first: &Mutex<bool>,
) -> Result<Step> {
    let (off, len, name) = {
        let r = rec.lock().expect("segment lock");
        (r.offset, r.length, ctx.naming.name(&r))
    };
    let op = format!("PUT {label} ({}/{name})", ctx.naming.container);
    let check_source = Mutex::new(false);
    // A journal write that fails (disk full) ends the segment with that error as it is.
    let journal_failure: Mutex<Option<Error>> = Mutex::new(None);
    let result = retry::retry(ctx.swift.policy(), label, |_attempt| async {
        if *probe_first.lock().expect("flag") {
            ctx.swift.probe(&ctx.naming.container).await?;
            ctx.link_ok();
            *probe_first.lock().expect("flag") = false;
        }
        if std::mem::take(&mut *check_source.lock().expect("flag")) {
            // Swift said the body did not match our MD5 (422): was the file changed?
            let now = hash_range(ctx.file.clone(), off, len)
                .await
                .map_err(|e| SwiftError::source(&op, format!("cannot re-read the source: {e}")))?;
            if now != md5 {
                return Err(SwiftError::source(
                    &op,
                    format!("the file changed while uploading (MD5 of this segment was {md5}, is now {now})"),
                ));
            }
        }
        // A file that grew or shrank since the job began is not uploaded further.
        match crate::source::size_of(&ctx.file) {
            Ok(now) if now == ctx.file_size => {}
            Ok(now) => {
                return Err(SwiftError::source(
                    &op,
                    format!("the file changed while uploading: its size went from {} to {now} bytes", ctx.file_size),
                ));
            }
            Err(e) => return Err(SwiftError::source(&op, format!("cannot stat the source: {e}"))),
        }
        let start = {
            let mut r = rec.lock().expect("segment lock");
            r.attempts += 1;
            r.inflight = len;
            r.clone()
        };
        if let Err(e) = save(&ctx.journal, start, true).await {
            let msg = e.msg.clone();
            *journal_failure.lock().expect("flag") = Some(e);
            return Err(SwiftError::local(&op, msg, Class::Fatal));
        }
        let mut attempt = Attempt { ctx, rec, meter: Meter::new(), settled: false };
        let body =
            segment_body(ctx.file.clone(), off, len, attempt.meter.clone(), ctx.progress.clone(), ctx.pacer.clone());
        let put = ctx.swift.put_segment(&op, &ctx.naming.container, &name, md5, len, body);
        let res = tokio::select! {
            r = put => r,
            _ = stalled(&attempt.meter, ctx.stall_timeout) => Err(SwiftError::stalled(&op, ctx.stall_timeout)),
        };
        let sent = attempt.settle();
        // A read failure of the source surfaces as a body error: it is the file's fault,
        // not the network's, so it is not retried.
        let read_error = attempt.meter.read_error.lock().expect("meter lock").take();
        let res = match (res, read_error) {
            (Err(_), Some(e)) => Err(SwiftError::source(&op, format!("cannot read the source: {e}"))),
            (r, _) => r,
        };
        match &res {
            Err(e) => {
                ctx.progress.bytes_wasted.fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
                if e.class == Class::Transient {
                    ctx.progress.trouble.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if e.status == Some(422) {
                    *check_source.lock().expect("flag") = true;
                }
                if e.origin == Origin::Network {
                    *probe_first.lock().expect("flag") = true;
                    ctx.link_failed();
                    // Cut off by an outage: if the link now carries less than this
                    // segment, split it instead of sending it whole again.
                    let (bytes, streams, secs) = ctx.link_counters();
                    if ctx.naming.ranged && ctx.sizer.cut(len, bytes, streams, secs).is_some() {
                        let r = rec.lock().expect("segment lock").clone();
                        let _ = save(&ctx.journal, r, false).await;
                        return Ok(Step::Split);
                    }
                } else if e.status.is_some() {
                    ctx.link_ok();
                }
            }
            Ok(()) => ctx.link_ok(),
        }
        res.map(|()| Step::Sent)
    })
    .await;
    match result {
        Ok(step) => Ok(step),
        Err(e) => {
            if let Some(j) = journal_failure.lock().expect("flag").take() {
                return Err(j.context(label));
            }
            let r = rec.lock().expect("segment lock").clone();
            let _ = save(&ctx.journal, r, true).await;
            let attempts = rec.lock().expect("segment lock").attempts;
            let source_fault = e.origin == Origin::Source;
            let err = e.into_error(ErrorKind::Resumable);
            let hint = if source_fault {
                source_hint(&ctx.job_id)
            } else {
                err.hint.unwrap_or_else(|| format!("run `k5up resume {}` to continue", ctx.job_id))
            };
            Err(Error::new(err.kind, format!("{label}: {} (after {attempts} attempts)", err.msg)).hint(hint))
        }
    }
}

/// What to do when the source file changed or cannot be read.
pub(crate) fn source_hint(job: &str) -> String {
    format!(
        "restore the original file (same content and modification time), then `k5up resume {job}`; or `k5up abort {job}`"
    )
}

/// A read error of the source, in the user's words.
pub(crate) fn read_failure(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the file ended early: it is shorter than when the job began".into()
    } else {
        e.to_string()
    }
}

async fn confirm(ctx: &Ctx, mut r: SegmentRecord, how: Outcome) -> Result<Outcome> {
    r.state = SegState::Confirmed;
    r.inflight = 0;
    let len = r.length;
    save(&ctx.journal, r, true).await?;
    ctx.progress.confirmed(len);
    let counter = match how {
        Outcome::Sent => &ctx.progress.segments_sent,
        Outcome::Adopted => &ctx.progress.segments_adopted,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(how)
}
