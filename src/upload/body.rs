//! A segment's request body: read from disk in 1 MiB blocks by a blocking reader,
//! a few blocks ahead, never the whole segment in memory; every block handed to
//! the network is counted, and the time of the last one feeds the stall watchdog.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use super::read_mode::DiskMeter;
use super::shared_reads::SharedReads;
use crate::source::CHUNK;
use crate::transfer::meter::Meter;
use crate::transfer::pace::Pacer;
use crate::transfer::progress::Progress;

/// Blocks read ahead of the network per segment (so ~4 MiB per PUT in flight).
const READ_AHEAD: usize = 4;

/// A copy of `e` for the attempt to read (the original travels in the body stream):
/// its OS error number, or its kind and text.
fn same_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Where the MD5 of a body's bytes lands once the reader has read them all (hex):
/// a segment hashed while it is sent is read from storage once.
pub(crate) type Md5Slot = Arc<std::sync::Mutex<Option<String>>>;

/// What a body reads: `len` bytes at `off` in `file`.
pub(crate) struct Span {
    /// The source.
    pub file: Arc<File>,
    /// Where the body starts in it.
    pub off: u64,
    /// How many bytes it holds.
    pub len: u64,
    /// With a slot, the MD5 of the bytes read is put there after the last block.
    pub md5: Option<Md5Slot>,
    /// With a ledger, the whole-image digests read these bytes after the body, from
    /// the page cache: the body keeps within its budget ([`SharedReads`]).
    pub shared: Option<Arc<SharedReads>>,
    /// Times the reads (what the disk's rate is measured from).
    pub disk: Option<Arc<DiskMeter>>,
}

impl Span {
    /// The whole of `file` (`len` bytes), read for no one else.
    pub(crate) fn whole(file: Arc<File>, len: u64) -> Span {
        Span { file, off: 0, len, md5: None, shared: None, disk: None }
    }
}

/// A streamed body of `span`'s bytes.
pub(crate) fn segment_body(
    span: Span,
    meter: Arc<Meter>,
    progress: Arc<Progress>,
    pacer: Option<Arc<Pacer>>,
) -> crate::swift::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    let pool = Pool::default();
    tokio::task::spawn_blocking(move || {
        use md5::Digest;
        let Span { file, off, len, md5, shared, disk } = span;
        let mut hasher = md5.as_ref().map(|_| md5::Md5::new());
        let reader = shared.as_ref().map(|s| s.reader(off));
        let mut done = 0u64;
        while done < len {
            let n = CHUNK.min((len - done) as usize);
            if let (Some(s), Some(r)) = (&shared, &reader)
                && !s.body_read(r, off + done, n as u64, &|| tx.is_closed())
            {
                return; // the request was dropped while waiting for the digests
            }
            let mut buf = pool.take();
            let read = |b: &mut [u8]| file.read_exact_at(b, off + done);
            let r = match &disk {
                Some(d) => d.time(n as u64, || read(&mut buf[..n])),
                None => read(&mut buf[..n]),
            };
            let r = r.map(|_| {
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                pool.bytes(buf, n)
            });
            let failed = r.is_err();
            done += n as u64;
            if !failed
                && done == len
                && let (Some(h), Some(slot)) = (hasher.take(), md5.as_ref())
                && let Ok(mut s) = slot.lock()
            {
                *s = Some(hex::encode(h.finalize()));
            }
            if tx.blocking_send(r).is_err() || failed {
                return; // the request was dropped, or the read failed (sent as the error)
            }
        }
    });
    let stream =
        futures_util::stream::unfold((rx, meter, progress, pacer), |(mut rx, meter, progress, pacer)| async move {
            let item = rx.recv().await?;
            match &item {
                Ok(b) => {
                    if let Some(p) = &pacer {
                        p.admit(b.len(), &meter).await;
                    }
                    meter.tick(b.len() as u64);
                    progress.sent(b.len() as u64);
                }
                // The file's fault, not the network's: the attempt reads this and stops the run.
                Err(e) => {
                    if let Ok(mut slot) = meter.read_error.lock() {
                        *slot = Some(same_error(e));
                    }
                }
            }
            Some((item, (rx, meter, progress, pacer)))
        });
    crate::swift::Body::wrap_stream(stream)
}

/// The blocks of one body, recycled once the network is done with them: a segment
/// costs a handful of allocations instead of one zeroed MiB per block.
#[derive(Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.0.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| vec![0u8; CHUNK])
    }

    /// The first `len` bytes of `buf`, as a `Bytes` that returns `buf` here when dropped.
    fn bytes(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled { buf, len, pool: self.clone() })
    }
}

struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pool.0.lock()
            && p.len() <= READ_AHEAD + 2
        {
            p.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_blocks_show_their_bytes_and_come_back() {
        let pool = Pool::default();
        let mut b = pool.take();
        b[..3].copy_from_slice(b"abc");
        let bytes = pool.bytes(b, 3);
        assert_eq!(&bytes[..], b"abc");
        let ptr = bytes.as_ptr();
        drop(bytes);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the block was recycled");
    }
}
