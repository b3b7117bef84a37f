//! One segment: hash → (adopt if the server already holds it whole) → PUT with its
//! MD5 as `ETag` → verify the returned ETag → journal it durably.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::body::segment_body;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Journal, SegKind, SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::retry::{self, Class};
use crate::swift::{ListEntry, Origin, Swift, SwiftError};
use crate::transfer::meter::{Meter, stalled};
use crate::transfer::progress::Progress;

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
    pub pacer: Option<Arc<crate::transfer::pace::Pacer>>,
    /// How large a segment the link carries (splits segments on a link that breaks).
    pub sizer: crate::transfer::sizer::Sizer,
    /// The rest of a split segment goes back to the pool through this.
    pub requeue: tokio::sync::mpsc::UnboundedSender<(SegmentRecord, Option<ListEntry>)>,
    /// Zero runs of at least this many bytes are cut out and not sent (`None`: all
    /// bytes are sent).
    pub zero_run: Option<u64>,
    /// Where a DLO's zero segments are copied from (`None` for an SLO: its manifest
    /// points at one zero object).
    pub zeros: Option<Arc<super::zero_source::ZeroSource>>,
    /// What the server held under the job's prefix when the run began, by (offset,
    /// length): pieces a split makes are adopted if an earlier run left them whole.
    pub listed: Arc<std::collections::HashMap<(u64, u64), ListEntry>>,
    /// Confirmed data segments of the job, for repeats (`None`: every segment is sent).
    pub originals: Option<super::repeats::Originals>,
    /// The segments of `--base` by (MD5, length): (container, name) to copy from.
    pub base: std::collections::HashMap<(String, u64), (String, String)>,
}

/// How a segment got confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent by this run.
    Sent,
    /// Found whole on the server (MD5 and size match): not sent again.
    Adopted,
    /// Zeros: not sent (an SLO points at the zero object; a DLO copies it).
    Zero,
    /// The bytes of another confirmed segment of the job: not sent.
    Repeat,
    /// Copied on the server from a segment of the base: not sent.
    Copied,
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
            let _ = crate::runtime::blocking(|| self.ctx.journal.put_segment(&rec));
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
        if seg.is_zero() {
            return zero(&ctx, seg, listed).await;
        }
        // 1. A segment the server may hold whole is checked as it is; any other is
        //    first cut to what the link carries.
        if listed.as_ref().is_none_or(|e| e.bytes != seg.length) {
            listed = None;
            seg = ctx.cut(seg).await?;
        }
        let label = format!("{} of job {}", ctx.naming.label(&seg), ctx.job_id);
        let (off, len) = (seg.offset, seg.length);

        // 2. The MD5 must be known before the PUT: it goes in the ETag header. Zero
        //    runs found while hashing are cut out: this task goes on with the first
        //    piece, the others go back to the pool.
        let md5 = match seg.md5.clone() {
            Some(m) => m,
            None => {
                let pieces = scan(&ctx, off, len).await.map_err(|e| {
                    Error::failed(format!("{label}: cannot read the source: {}", read_failure(&e)))
                        .hint(source_hint(&ctx.job_id))
                })?;
                if pieces.len() > 1 || pieces[0].md5.is_none() {
                    let recs = super::hasher::pieces_to_records(seg, pieces);
                    let (j, put) = (ctx.journal.clone(), recs.clone());
                    crate::runtime::blocking(|| j.apply(&put, &[]))?;
                    ctx.progress.pieces(&recs);
                    let mut recs = recs.into_iter();
                    seg = recs.next().expect("a piece");
                    for r in recs {
                        let hint = ctx.hint(&r);
                        let _ = ctx.requeue.send((r, hint));
                    }
                    listed = ctx.hint(&seg);
                    continue;
                }
                let m = pieces[0].md5.clone().expect("data");
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
        // 3b. The bytes of a confirmed segment of this job: made on the server.
        if let Some(of) = ctx.originals.as_ref().and_then(|o| o.find(&md5, len, off)) {
            if !ctx.zero_objects() {
                seg.kind = SegKind::Repeat { of };
                return confirm(&ctx, seg, Outcome::Repeat).await;
            }
            let from = (ctx.naming.container.clone(), ctx.naming.name_at(of, len));
            if let Some(done) = copy_in(&ctx, &mut seg, &from, SegKind::Repeat { of }, &label).await? {
                return Ok(done);
            }
        }
        // 3c. The bytes of a segment of the base: copied on the server.
        if let Some(from) = ctx.base.get(&(md5.clone(), len))
            && let Some(done) = copy_in(&ctx, &mut seg, from, SegKind::Copied, &label).await?
        {
            return Ok(done);
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

/// Reads and hashes a segment on a blocking thread, cutting out zero runs.
async fn scan(ctx: &Ctx, off: u64, len: u64) -> std::io::Result<Vec<crate::zeros::Piece>> {
    let (file, min, ends) = (ctx.file.clone(), ctx.zero_run, off + len == ctx.file_size);
    tokio::task::spawn_blocking(move || crate::zeros::scan_range(&file, off, len, min, ends))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// A zero segment: nothing to send. An SLO's is confirmed as it is (its manifest
/// points at the job's zero object); a DLO's is adopted if the server holds it
/// whole, else made by a server-side copy.
async fn zero(ctx: &Ctx, mut seg: SegmentRecord, listed: Option<ListEntry>) -> Result<Outcome> {
    let Some(zeros) = &ctx.zeros else {
        return confirm(ctx, seg, Outcome::Zero).await;
    };
    let label = format!("{} of job {} (zeros)", ctx.naming.label(&seg), ctx.job_id);
    let md5 = crate::runtime::blocking(|| zeros.md5(seg.length));
    seg.md5 = Some(md5.clone());
    if listed.or_else(|| ctx.hint(&seg)).is_some_and(|e| e.hash == md5 && e.bytes == seg.length) {
        return confirm(ctx, seg, Outcome::Adopted).await;
    }
    let name = ctx.naming.name(&seg);
    zeros
        .copy_to(&ctx.swift, &ctx.naming.container, &name, seg.length)
        .await
        .map_err(|e| copy_failed(ctx, &label, e))?;
    ctx.link_ok();
    confirm(ctx, seg, Outcome::Zero).await
}

/// Makes `seg` on the server by copying `from` (container, name), which holds the
/// same bytes (a repeat's original in a DLO, or a segment of the base), into the
/// segment's own object, and confirms it as `kind`. `Ok(None)` when `from` is gone
/// (deleted since): the segment is sent instead.
async fn copy_in(
    ctx: &Ctx,
    seg: &mut SegmentRecord,
    from: &(String, String),
    kind: SegKind,
    label: &str,
) -> Result<Option<Outcome>> {
    let to = ctx.naming.name(seg);
    let md5 = seg.md5.clone().unwrap_or_default();
    let op = format!("COPY {label} from {}/{}", from.0, from.1);
    match ctx.swift.copy(&op, &ctx.naming.container, &to, (&from.0, &from.1), None, &md5).await {
        Ok(()) => {}
        Err(e) if e.status == Some(404) => {
            tracing::warn!("{label}: {}/{} is gone: sending the segment instead", from.0, from.1);
            return Ok(None);
        }
        Err(e) => return Err(copy_failed(ctx, label, e)),
    }
    ctx.link_ok();
    seg.kind = kind;
    let how = if kind == SegKind::Copied { Outcome::Copied } else { Outcome::Repeat };
    confirm(ctx, seg.clone(), how).await.map(Some)
}

/// A server-side copy that failed (after its retries), named with its segment.
fn copy_failed(ctx: &Ctx, label: &str, e: SwiftError) -> Error {
    let err = e.into_error(ErrorKind::Resumable);
    let hint = err.hint.clone().unwrap_or_else(|| format!("run `k5up resume {}` to continue", ctx.job_id));
    Error::new(err.kind, format!("{label}: {}", err.msg)).hint(hint)
}

impl Ctx {
    /// True when segments made on the server are objects of their own (a DLO: its
    /// listing is the object), false for an SLO (its manifest points at the source).
    fn zero_objects(&self) -> bool {
        self.zeros.is_some()
    }

    /// What the server held at the start of the run under `seg`'s name, if anything.
    fn hint(&self, seg: &SegmentRecord) -> Option<ListEntry> {
        self.listed.get(&(seg.offset, seg.length)).cloned()
    }

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
        let rest = SegmentRecord::at(seg.offset + size, seg.length - size);
        // Say why it was cut: an outage only when there was one this run.
        let why = if self.sizer.after_outage() {
            "as the link lately carries about that much between outages".to_string()
        } else {
            format!(
                "as one stream has sent about that much per {} s so far (a slow start: segments grow with the rate)",
                crate::transfer::sizer::HORIZON_SECS
            )
        };
        tracing::info!(
            "job {}: {} split: {} now, the rest ({}) later, {why}",
            self.job_id,
            self.naming.label(&seg),
            crate::units::format_size(size),
            crate::units::format_size(rest.length)
        );
        let (j, pieces) = (self.journal.clone(), [head.clone(), rest.clone()]);
        tokio::task::spawn_blocking(move || j.apply(&pieces, &[]))
            .await
            .map_err(|e| Error::failed(format!("journal task failed: {e}")))??;
        let n = self.progress.splits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let j = self.journal.clone();
        crate::runtime::blocking(|| j.put_splits(n))?;
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
                if e.origin.is_link() {
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
    save(&ctx.journal, r.clone(), true).await?;
    if let Some(o) = &ctx.originals {
        o.add(&r);
    }
    ctx.progress.confirmed(len);
    let counter = match how {
        Outcome::Sent => &ctx.progress.segments_sent,
        Outcome::Adopted => &ctx.progress.segments_adopted,
        Outcome::Zero => &ctx.progress.segments_zero,
        Outcome::Repeat => {
            ctx.progress.bytes_repeated.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
            &ctx.progress.segments_repeated
        }
        Outcome::Copied => {
            ctx.progress.bytes_copied.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
            &ctx.progress.segments_copied
        }
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(how)
}
