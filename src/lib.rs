//! k5up: resumable, verified uploads of large disk images into OpenStack Swift.
//!
//! Data flow (see ARCHITECTURE.md): [`plan`] → [`journal`] → [`upload`] workers
//! → manifest ([`swift::manifest`]) → verification.
#![warn(missing_docs, unreachable_pub)]

pub mod error;
pub mod journal;
pub mod md5lanes;
pub mod names;
pub mod plan;
pub mod source;
pub mod units;

pub use error::{Error, ErrorKind, Result};
pub mod digest;
pub mod engine;
pub mod import;
pub mod progress;
pub mod retry;
pub mod status;
pub mod swift;
pub mod upload;
