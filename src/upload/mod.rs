//! The bounded worker pool: the only module that spawns upload tasks.
//!
//! At most `concurrency` segments are in flight; each is hashed, PUT and journaled
//! by its own task ([`segment::process`]). A fatal error or Ctrl-C stops new
//! segments and abandons the ones in flight; what was confirmed stays confirmed.
//!
//! Concurrency adapts (AIMD): when transient failures rise (throttling, 5xx, resets,
//! stalls) the number of segments started in parallel is halved; every two segments
//! confirmed without a new failure add one back, up to `concurrency`.

pub mod body;
pub mod hasher;
pub mod pace;
pub mod repeats;
pub mod segment;
pub mod sizer;
pub mod zero_source;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub use segment::{Ctx, Outcome};

use crate::error::{Error, Result};
use std::sync::atomic::Ordering::Relaxed;

use crate::progress::Progress;

/// What goes back to the pool: the rest of a split segment.
pub type Requeued = (crate::journal::SegmentRecord, Option<crate::swift::ListEntry>);

/// Uploads `todo` with at most `concurrency` segments in flight. `on_tick` runs about
/// once a second (status snapshots). Returns when all are confirmed, on the first
/// error, or when `cancel` turns true (a resumable "interrupted" error). The rests
/// of split segments (`requeue`) go before the segments not yet started.
pub async fn run(
    ctx: Arc<Ctx>,
    mut ready: tokio::sync::mpsc::Receiver<hasher::Ready>,
    mut requeue: tokio::sync::mpsc::UnboundedReceiver<Requeued>,
    concurrency: usize,
    cancel: &mut watch::Receiver<bool>,
    mut on_tick: impl FnMut() -> Result<()>,
) -> Result<()> {
    let mut ready_done = false;
    let mut set = JoinSet::new();
    let mut failure: Option<Error> = None;
    let mut cancelled = *cancel.borrow();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let max = concurrency.max(1);
    let mut limit = max;
    let mut seen_trouble = Progress::get(&ctx.progress.trouble);
    let mut calm = 0;
    let mut backlog: std::collections::VecDeque<Requeued> = Default::default();
    ctx.progress.concurrency.store(limit as u64, Relaxed);
    loop {
        while let Ok(item) = requeue.try_recv() {
            backlog.push_back(item);
        }
        ctx.progress.in_flight.store(set.len() as u64, Relaxed);
        let target = ctx.sizer.target(
            Progress::get(&ctx.progress.run_bytes_sent),
            set.len().max(1) as u64,
            ctx.progress.started.elapsed().as_secs_f64(),
        );
        let limiting = target.filter(|&t| t < ctx.segment_size).unwrap_or(0);
        ctx.progress.segment_target.store(limiting, Relaxed);
        let trouble = Progress::get(&ctx.progress.trouble);
        if trouble > seen_trouble {
            seen_trouble = trouble;
            calm = 0;
            if limit > 1 {
                let fewer = (limit / 2).max(1);
                tracing::info!("job {}: transient failures: {limit} → {fewer} segments in parallel", ctx.job_id);
                limit = fewer;
            }
        }
        ctx.progress.concurrency.store(limit as u64, Relaxed);
        let stopping = failure.is_some() || cancelled;
        if set.is_empty() && ((ready_done && backlog.is_empty()) || stopping) {
            break;
        }
        if set.len() < limit
            && !stopping
            && let Some((seg, hint)) = backlog.pop_front()
        {
            set.spawn(segment::process(ctx.clone(), seg, hint));
            continue;
        }
        let room = set.len() < limit && !stopping && !ready_done;
        tokio::select! {
            Some(item) = requeue.recv() => backlog.push_back(item),
            next = ready.recv(), if room => match next {
                Some(Ok((seg, hint))) => {
                    set.spawn(segment::process(ctx.clone(), seg, hint));
                }
                Some(Err(e)) => {
                    set.abort_all();
                    failure.get_or_insert(e);
                }
                None => ready_done = true,
            },
            joined = set.join_next(), if !set.is_empty() => match joined {
                Some(Ok(Ok(_)))
                    if Progress::get(&ctx.progress.trouble) == seen_trouble => {
                        calm += 1;
                        if calm >= 2 && limit < max {
                            calm = 0;
                            tracing::info!("job {}: no failures: {limit} → {} segments in parallel", ctx.job_id, limit + 1);
                            limit += 1;
                        }
                    }
                Some(Ok(Err(e)))
                    if failure.is_none() => {
                        set.abort_all();
                        failure = Some(e);
                    }
                Some(Err(je)) if je.is_panic() => {
                    set.abort_all();
                    failure.get_or_insert_with(|| Error::failed(format!("an upload task panicked: {je}")));
                }
                _ => {}
            },
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() || *cancel.borrow() {
                    cancelled = true;
                    set.abort_all();
                }
            }
            _ = tick.tick() => {
                if let Err(e) = on_tick() && failure.is_none() {
                    set.abort_all();
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if cancelled {
        return Err(crate::runtime::interrupted(&ctx.job_id));
    }
    Ok(())
}
