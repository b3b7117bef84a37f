//! k5up: resumable, verified uploads of large disk images into OpenStack Swift.
//!
//! Data flow (see ARCHITECTURE.md): [`plan`] → [`journal`] → [`upload`] workers
//! → manifest ([`swift::manifest`]) → verification → [`import`].
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod digest;
pub mod engine;
pub mod error;
pub mod import;
pub mod journal;
pub mod md5lanes;
pub mod model;
pub mod names;
pub mod plan;
pub mod retry;
pub mod runtime;
pub mod source;
pub mod status;
pub mod swift;
pub mod transfer;
pub mod units;
pub mod upload;
pub mod zeros;

pub use error::{Error, ErrorKind, Result};
