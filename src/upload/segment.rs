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
    /// `--bwlimit`, shared by every body.
    pub pacer: Option<Arc<super::pace::Pacer>>,
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

/// Uploads one segment (or adopts it), and journals it as confirmed.
pub async fn process(ctx: Arc<Ctx>, seg: SegmentRecord, on_server: Option<ListEntry>) -> Result<Outcome> {
    let label = format!("segment {} of job {}", seg.index, ctx.job_id);
    let name = ctx.naming.name(seg.index);
    let (off, len) = (seg.offset, seg.length);
    let rec = Mutex::new(seg);

    // 1. The MD5 must be known before the PUT: it goes in the ETag header.
    let known = rec.lock().expect("segment lock").md5.clone();
    let md5 = match known {
        Some(m) => m,
        None => {
            let m = hash_range(ctx.file.clone(), off, len).await.map_err(|e| {
                Error::failed(format!("{label}: cannot read the source: {}", read_failure(&e)))
                    .hint(source_hint(&ctx.job_id))
            })?;
            let r = {
                let mut r = rec.lock().expect("segment lock");
                r.md5 = Some(m.clone());
                r.clone()
            };
            save(&ctx.journal, r, false).await?;
            m
        }
    };

    // 2. Already on the server, whole? (a PUT that completed before a crash, or a lost journal)
    if on_server.is_some_and(|e| e.hash == md5 && e.bytes == len) {
        tracing::debug!("{label}: already on the server with MD5 {md5}: adopted");
        return confirm(&ctx, rec, Outcome::Adopted).await;
    }

    // 3. PUT with retries.
    let op = format!("PUT {label} ({}/{name})", ctx.naming.container);
    let check_source = Mutex::new(false);
    // After a transport failure (reset, refused, stalled) the link may be down: probe it
    // with a cheap HEAD before sending a whole segment body into it again.
    let probe_first = Mutex::new(false);
    // A journal write that fails (disk full) ends the segment with that error as it is.
    let journal_failure: Mutex<Option<Error>> = Mutex::new(None);
    let result = retry::retry(ctx.swift.policy(), &label, |_attempt| async {
        if *probe_first.lock().expect("flag") {
            ctx.swift.probe(&ctx.naming.container).await?;
            ctx.progress.link_ok();
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
        let mut attempt = Attempt { ctx: &ctx, rec: &rec, meter: Meter::new(), settled: false };
        let body =
            segment_body(ctx.file.clone(), off, len, attempt.meter.clone(), ctx.progress.clone(), ctx.pacer.clone());
        let put = ctx.swift.put_segment(&op, &ctx.naming.container, &name, &md5, len, body);
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
        if let Err(e) = &res {
            ctx.progress.bytes_wasted.fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            if e.class == Class::Transient {
                ctx.progress.trouble.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if e.status == Some(422) {
                *check_source.lock().expect("flag") = true;
            }
            if e.origin == Origin::Network {
                *probe_first.lock().expect("flag") = true;
                ctx.progress.link_failed();
            } else if e.status.is_some() {
                ctx.progress.link_ok();
            }
        } else {
            ctx.progress.link_ok();
        }
        res
    })
    .await;
    match result {
        Ok(()) => confirm(&ctx, rec, Outcome::Sent).await,
        Err(e) => {
            if let Some(j) = journal_failure.lock().expect("flag").take() {
                return Err(j.context(&label));
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

async fn confirm(ctx: &Ctx, rec: Mutex<SegmentRecord>, how: Outcome) -> Result<Outcome> {
    let r = {
        let mut r = rec.into_inner().expect("segment lock");
        r.state = SegState::Confirmed;
        r.inflight = 0;
        r
    };
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
