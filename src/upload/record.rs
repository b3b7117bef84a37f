//! A segment's records in the journal: saved as it goes, confirmed durably (a
//! flush after the record) with the run's counters.

use std::sync::Arc;

use super::ctx::{Ctx, Outcome};
use crate::error::Result;
use crate::journal::{Journal, SegState, SegmentRecord};

/// Writes `rec`, and makes it durable when `flush`, off the async worker.
pub(super) async fn save(journal: &Arc<Journal>, rec: SegmentRecord, flush: bool) -> Result<()> {
    let j = journal.clone();
    crate::runtime::off_thread("journal write", move || {
        j.put_segment(&rec)?;
        if flush { j.flush() } else { Ok(()) }
    })
    .await
}

/// Journals `r` as confirmed (durably), and counts it as `how`.
pub(super) async fn confirm(ctx: &Ctx, mut r: SegmentRecord, how: Outcome) -> Result<Outcome> {
    r.state = SegState::Confirmed;
    r.inflight = 0;
    let len = r.length;
    save(&ctx.journal, r.clone(), true).await?;
    if let Some(s) = &ctx.shared_reads {
        s.confirmed(r.offset, len);
    }
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
