//! The transfer core, shared by both directions (upload today, download next): the
//! bounded worker pool with adaptive concurrency, the link-adaptive unit size, the
//! `--bwlimit` pacer, the per-attempt meter and stall watchdog, and the live
//! progress counters. It knows jobs and their ranges through `model` and `journal`
//! below it; what a unit of work does (a PUT, a GET) is the direction's.

pub(crate) mod meter;
pub(crate) mod pace;
pub(crate) mod pool;
pub(crate) mod progress;
pub(crate) mod sizer;
