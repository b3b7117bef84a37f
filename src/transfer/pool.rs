//! The bounded worker pool, shared by both directions: the only place that spawns
//! transfer tasks.
//!
//! At most `concurrency` units are in flight; each is worked by its own task (the
//! direction's `work`). A fatal error or Ctrl-C stops new units and abandons the ones
//! in flight; what was confirmed stays confirmed.
//!
//! Concurrency adapts (AIMD): when transient failures rise (throttling, 5xx, resets,
//! stalls: [`Progress::trouble`]) the number of units started in parallel is halved;
//! every two units confirmed without a new failure add one back, up to `concurrency`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::progress::Progress;
use crate::error::{Error, Result};
use crate::transfer::sizer::Sizer;

/// Where a pool's units come from: the ones not yet started, in order, and the
/// rests of split units, which go first.
#[derive(Debug)]
pub(crate) struct Feed<T> {
    /// Units ready to start (hashed, for an upload), or the error that stops the run.
    pub ready: mpsc::Receiver<Result<T>>,
    /// The rests of split units.
    pub requeue: mpsc::UnboundedReceiver<T>,
}

/// What a pool is sized and named by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    /// The job id, for messages.
    pub job_id: &'a str,
    /// At most this many units in flight.
    pub concurrency: usize,
    /// The plan's (largest) unit size: the sizer's target is shown when below it.
    pub unit_size: u64,
}

/// Works every unit of `feed` with `work`, at most `shape.concurrency` at once.
/// `on_tick` runs about once a second (status snapshots). Returns when all are done,
/// on the first error, or when `cancel` turns true (a resumable "interrupted" error).
pub(crate) async fn run<T, O, F, Fut>(
    shape: Shape<'_>,
    mut feed: Feed<T>,
    progress: &Progress,
    sizer: &Sizer,
    cancel: &mut watch::Receiver<bool>,
    mut on_tick: impl FnMut() -> Result<()>,
    mut work: F,
) -> Result<()>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<O>> + Send + 'static,
    O: Send + 'static,
{
    let mut ready_done = false;
    let mut set = JoinSet::new();
    let mut failure: Option<Error> = None;
    let mut cancelled = *cancel.borrow();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let max = shape.concurrency.max(1);
    let mut limit = max;
    let mut seen_trouble = Progress::get(&progress.trouble);
    let mut calm = 0;
    let mut backlog: VecDeque<T> = VecDeque::new();
    progress.concurrency.store(limit as u64, Relaxed);
    loop {
        while let Ok(item) = feed.requeue.try_recv() {
            backlog.push_back(item);
        }
        progress.in_flight.store(set.len() as u64, Relaxed);
        let target = sizer.target(
            Progress::get(&progress.run_bytes_sent),
            set.len().max(1) as u64,
            progress.started.elapsed().as_secs_f64(),
        );
        progress.segment_target.store(target.filter(|&t| t < shape.unit_size).unwrap_or(0), Relaxed);
        let trouble = Progress::get(&progress.trouble);
        if trouble > seen_trouble {
            seen_trouble = trouble;
            calm = 0;
            if limit > 1 {
                let fewer = (limit / 2).max(1);
                tracing::info!("job {}: transient failures: {limit} → {fewer} segments in parallel", shape.job_id);
                limit = fewer;
            }
        }
        progress.concurrency.store(limit as u64, Relaxed);
        let stopping = failure.is_some() || cancelled;
        if set.is_empty() && ((ready_done && backlog.is_empty()) || stopping) {
            break;
        }
        if set.len() < limit
            && !stopping
            && let Some(unit) = backlog.pop_front()
        {
            set.spawn(work(unit));
            continue;
        }
        let room = set.len() < limit && !stopping && !ready_done;
        tokio::select! {
            Some(unit) = feed.requeue.recv() => backlog.push_back(unit),
            next = feed.ready.recv(), if room => match next {
                Some(Ok(unit)) => {
                    set.spawn(work(unit));
                }
                Some(Err(e)) => {
                    set.abort_all();
                    failure.get_or_insert(e);
                }
                None => ready_done = true,
            },
            joined = set.join_next(), if !set.is_empty() => match joined {
                Some(Ok(Ok(_)))
                    if Progress::get(&progress.trouble) == seen_trouble => {
                        calm += 1;
                        if calm >= 2 && limit < max {
                            calm = 0;
                            tracing::info!("job {}: no failures: {limit} → {} segments in parallel", shape.job_id, limit + 1);
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
                    failure.get_or_insert_with(|| Error::failed(format!("job {}: a transfer task panicked: {je}", shape.job_id)));
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
        return Err(crate::runtime::interrupted(shape.job_id));
    }
    Ok(())
}
