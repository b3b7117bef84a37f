//! A segment's failures in the user's words: what failed on which segment, its
//! cause kept as the error's source, and what to do.

use super::ctx::Ctx;
use crate::error::{Error, ErrorKind};
use crate::swift::{Origin, SwiftError};

/// A server-side copy that failed (after its retries), named with its segment; the
/// server's error stays its source.
pub(super) fn copy_failed(ctx: &Ctx, label: &str, e: SwiftError) -> Error {
    let err = e.into_error(ErrorKind::Resumable);
    let hint = err.hint.clone().unwrap_or_else(|| resume_hint(ctx));
    err.context(label).hint(hint)
}

/// A PUT that failed for good (a fatal answer, or the retries ran out): the segment,
/// the attempts, the server's error as the source, and what to do.
pub(super) fn exhausted(ctx: &Ctx, label: &str, e: SwiftError, attempts: u32) -> Error {
    let source_fault = e.origin == Origin::Source;
    let mut err = e.into_error(ErrorKind::Resumable).context(label);
    err.msg.push_str(&format!(" (after {attempts} attempts)"));
    let hint =
        if source_fault { source_hint(&ctx.job_id) } else { err.hint.clone().unwrap_or_else(|| resume_hint(ctx)) };
    err.hint(hint)
}

fn resume_hint(ctx: &Ctx) -> String {
    format!("run `k5up resume {}` to continue", ctx.job_id)
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
