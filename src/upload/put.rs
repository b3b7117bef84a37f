//! One segment's PUT, retried: the MD5 in the `ETag` header, the body streamed from
//! the file, the stall watchdog, the link signals for the sizer, and the bytes of
//! every attempt settled in the segment's record.

use std::fs::File;
use std::sync::{Arc, Mutex};

use super::body::{Md5Slot, Span, segment_body};
use super::ctx::Ctx;
use super::failure::{exhausted, read_failure};
use super::record::save;
use crate::error::{Error, Result};
use crate::journal::SegmentRecord;
use crate::retry::{self, Class};
use crate::swift::SwiftError;
use crate::transfer::meter::{Meter, stalled};
use crate::transfer::progress::Progress;

/// Hashes `len` bytes at `off` on a blocking thread.
async fn hash_range(file: Arc<File>, off: u64, len: u64) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || crate::source::md5_range(&file, off, len))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
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
pub(super) enum Step {
    /// Sent and its ETag checked.
    Sent,
    /// Cut off by an outage, and now larger than the link carries: split it.
    Split,
}

/// Sends one segment, retrying, until its ETag is checked; or stops early with
/// [`Step::Split`] when an outage cut it off and it no longer fits the link.
/// Without `md5` the segment is hashed while it is sent (read from storage once):
/// the server's ETag must be the MD5 of the bytes sent, which then goes in `rec`.
pub(super) async fn send(
    ctx: &Ctx,
    rec: &Mutex<SegmentRecord>,
    label: &str,
    md5: Option<&str>,
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
                .map_err(|e| SwiftError::source(&op, format!("cannot re-read the source: {e}")).caused_by(e))?;
            if Some(now.as_str()) != md5 {
                return Err(SwiftError::source(
                    &op,
                    format!(
                        "the file changed while uploading (MD5 of this segment was {}, is now {now})",
                        md5.unwrap_or("-")
                    ),
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
            Err(e) => return Err(SwiftError::source(&op, format!("cannot stat the source: {e}")).caused_by(e)),
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
        let slot = md5.is_none().then(Md5Slot::default);
        let (meter, progress, pacer) = (attempt.meter.clone(), ctx.progress.clone(), ctx.pacer.clone());
        let span = Span {
            file: ctx.file.clone(),
            off,
            len,
            md5: slot.clone(),
            shared: ctx.shared_reads.clone(),
            disk: Some(ctx.read_mode.disk.clone()),
        };
        let body = segment_body(span, meter, progress, pacer);
        let put = ctx.swift.put_segment(&op, &ctx.naming.container, &name, md5, len, body);
        let res = tokio::select! {
            r = put => r,
            _ = stalled(&attempt.meter, ctx.stall_timeout) => Err(SwiftError::stalled(&op, ctx.stall_timeout)),
        };
        // Hashed while sent: the server must hold what was read.
        let res = res.and_then(|etag| match slot.map(|s| s.lock().expect("md5 slot").take()) {
            None => Ok(()),
            Some(Some(sent)) if sent == etag => {
                rec.lock().expect("segment lock").md5 = Some(sent);
                Ok(())
            }
            Some(sent) => Err(SwiftError::local(
                &op,
                format!("server ETag {etag} ≠ MD5 of the bytes sent {}", sent.as_deref().unwrap_or("(not all read)")),
                Class::Transient,
            )),
        });
        let sent = attempt.settle();
        // A read failure of the source surfaces as a body error: it is the file's fault,
        // not the network's, so it is not retried.
        let read_error = attempt.meter.read_error.lock().expect("meter lock").take();
        let res = match (res, read_error) {
            (Err(_), Some(e)) => {
                Err(SwiftError::source(&op, format!("cannot read the source: {}", read_failure(&e))).caused_by(e))
            }
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
            Err(exhausted(ctx, label, e, attempts))
        }
    }
}
