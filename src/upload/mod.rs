//! The upload direction: the source read in hashed segments ([`hasher`]), each
//! segment PUT, adopted or made on the server by its own task ([`segment::process`])
//! in the transfer core's pool.

pub(crate) mod body;
mod ctx;
mod cut;
mod failure;
pub(crate) mod hasher;
mod on_server;
mod put;
mod read_mode;
mod record;
pub(crate) mod repeats;
pub(crate) mod segment;
pub(crate) mod shared_reads;
pub(crate) mod zero_source;

use std::sync::Arc;

use tokio::sync::watch;

pub(crate) use ctx::Ctx;
pub(crate) use read_mode::ReadMode;

use crate::error::Result;
use crate::transfer::pool::{self, Feed, Shape};

/// What goes back to the pool: the rest of a split segment.
pub(crate) type Requeued = (crate::journal::SegmentRecord, Option<crate::swift::ListEntry>);

/// Uploads what the hasher hands over (`ready`) with at most `concurrency` segments
/// in flight, the rests of split segments (`requeue`) first. `on_tick` runs about
/// once a second (status snapshots). See [`pool::run`].
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    ready: tokio::sync::mpsc::Receiver<hasher::Ready>,
    requeue: tokio::sync::mpsc::UnboundedReceiver<Requeued>,
    concurrency: usize,
    cancel: &mut watch::Receiver<bool>,
    on_tick: impl FnMut() -> Result<()>,
) -> Result<()> {
    let shape = Shape { job_id: &ctx.job_id, concurrency, unit_size: ctx.segment_size };
    let work = |(seg, hint): Requeued| segment::process(ctx.clone(), seg, hint);
    pool::run(shape, Feed { ready, requeue }, &ctx.progress, &ctx.sizer, cancel, on_tick, work).await
}
