//! Runtime helpers every layer may use, and which use nothing of k5up but its
//! error type: blocking work off the async workers, and cancellation (Ctrl-C,
//! SIGTERM) as a future and as an error.

use tokio::sync::watch;

use crate::error::Error;

/// Runs blocking work (a journal flush is an fsync; a snapshot a file write and a
/// rename; an MD5 of zeros a few milliseconds of CPU) without holding up the async
/// worker's other tasks: tokio moves them to another thread meanwhile. Outside a
/// multi-thread runtime, it simply runs `f`.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The error of a run stopped by Ctrl-C or SIGTERM.
pub(crate) fn interrupted(job_id: &str) -> Error {
    Error::resumable(format!("job {job_id} interrupted")).hint(format!("run `k5up resume {job_id}` to continue"))
}

/// Resolves once `cancel` is true (never, if its sender is gone).
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow_and_update() {
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs `f` on tokio's blocking threads (reads of the source, journal batches) and
/// waits for it. A task that panicked is a failure of this program, said so.
pub(crate) async fn off_thread<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(Error::failed(format!("{what}: a worker thread failed: {e}"))),
    }
}
