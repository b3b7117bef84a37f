//! k5up: resumable, verified uploads of large disk images into OpenStack Swift.
//!
//! Layers, each using only those below it (see ARCHITECTURE.md): `cli` → `engine`
//! → `upload` (a download next) → the transfer core (`transfer`, `plan`, `journal`,
//! `model`) → `swift`, `source`, `zeros`, `digest`, `md5lanes` → `retry`, `runtime`,
//! `units`, `error`. Only `cli` is public: everything else is the crate's own, so the
//! compiler reports what nothing uses.
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
mod digest;
mod engine;
mod error;
mod import;
mod journal;
mod md5lanes;
mod memory;
mod model;
mod names;
mod plan;
mod retry;
mod runtime;
mod source;
mod status;
mod swift;
mod transfer;
mod units;
mod upload;
mod zeros;

pub(crate) use error::{Error, ErrorKind, Result};

/// What the integration tests and the benchmarks reach inside the library (an old
/// journal written record by record, the MD5 kernels): not an interface.
#[doc(hidden)]
pub mod testing {
    pub use crate::journal::Root;
    pub use crate::md5lanes::{Backend, MAX_LANES, Md5Stream, update_many};
    pub use crate::model::{Phase, SegKind, SegState, SegmentRecord};
    pub use crate::names::SegmentNaming;
    pub use crate::source::md5_range;
    pub use crate::swift::capabilities::StoreTraits;
}
