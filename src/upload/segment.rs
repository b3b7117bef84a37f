//! One segment: hash → (adopt if the server already holds it whole) → PUT with its
//! MD5 as `ETag` → verify the returned ETag → journal it durably. Where the page
//! cache cannot hold a second read, the hash is made while the PUT sends the bytes.

use std::sync::{Arc, Mutex};

use super::ctx::{Ctx, Outcome};
use super::failure::{read_failure, source_hint};
use super::on_server::{copy_in, zero};
use super::put::{Step, send};
use super::record::{confirm, save};
use crate::error::{Error, Result};
use crate::journal::{SegKind, SegmentRecord};
use crate::swift::ListEntry;

/// Uploads one segment (or adopts it), and journals it as confirmed. On a link that
/// breaks, the segment is first cut to what the link carries ([`Ctx::cut`]): this
/// task goes on with the head, the rest goes back to the pool.
pub(crate) async fn process(ctx: Arc<Ctx>, seg: SegmentRecord, on_server: Option<ListEntry>) -> Result<Outcome> {
    let mut seg = seg;
    let mut listed = on_server;
    // After a transport failure (reset, refused, stalled) the link may be down: probe it
    // with a cheap HEAD before sending a whole segment body into it again.
    let probe_first = Mutex::new(false);
    loop {
        if seg.is_zero() {
            return zero(&ctx, seg, listed).await;
        }
        // 1. A segment the server may hold whole is checked as it is; any other is
        //    first cut to what the link carries.
        if listed.as_ref().is_none_or(|e| e.bytes != seg.length) {
            listed = None;
            seg = ctx.cut(seg).await?;
        }
        let label = format!("{} of job {}", ctx.naming.label(&seg), ctx.job_id);
        let (off, len) = (seg.offset, seg.length);

        // 2. The MD5 must be known before the PUT: it goes in the ETag header. Zero
        //    runs found while hashing are cut out: this task goes on with the first
        //    piece, the others go back to the pool.
        let md5 = match seg.md5.clone() {
            Some(m) => Some(m),
            // Hashed while it is sent (no repeats looked for), unless it starts with
            // zeros, which a scan cuts out first.
            None if listed.is_none()
                && ctx.read_mode.stream(&ctx.progress)
                && !starts_with_zeros(&ctx, off, len).await =>
            {
                None
            }
            None => {
                let pieces = scan(&ctx, off, len).await.map_err(|e| {
                    Error::failed(format!("{label}: cannot read the source: {}", read_failure(&e)))
                        .hint(source_hint(&ctx.job_id))
                        .caused_by(e)
                })?;
                if pieces.len() > 1 || pieces[0].md5.is_none() {
                    let recs = super::hasher::pieces_to_records(seg, pieces);
                    let (j, put) = (ctx.journal.clone(), recs.clone());
                    crate::runtime::blocking(|| j.apply(&put, &[]))?;
                    ctx.progress.pieces(&recs);
                    let mut recs = recs.into_iter();
                    seg = recs.next().expect("a piece");
                    for r in recs {
                        let hint = ctx.hint(&r);
                        let _ = ctx.requeue.send((r, hint));
                    }
                    listed = ctx.hint(&seg);
                    continue;
                }
                let m = pieces[0].md5.clone().expect("data");
                seg.md5 = Some(m.clone());
                save(&ctx.journal, seg.clone(), false).await?;
                Some(m)
            }
        };

        // 3. Already on the server, whole? (a PUT that completed before a crash, or a lost journal)
        if let Some(md5) = &md5
            && listed.take().is_some_and(|e| &e.hash == md5 && e.bytes == len)
        {
            tracing::debug!("{label}: already on the server with MD5 {md5}: adopted");
            return confirm(&ctx, seg, Outcome::Adopted).await;
        }
        // 3b. The bytes of a confirmed segment of this job: made on the server.
        if let Some(md5) = &md5
            && let Some(of) = ctx.originals.as_ref().and_then(|o| o.find(md5, len, off))
        {
            if !ctx.zero_objects() {
                seg.kind = SegKind::Repeat { of };
                return confirm(&ctx, seg, Outcome::Repeat).await;
            }
            let from = (ctx.naming.container.clone(), ctx.naming.name_at(of, len));
            if let Some(done) = copy_in(&ctx, &mut seg, &from, SegKind::Repeat { of }, &label).await? {
                return Ok(done);
            }
        }
        // 3c. The bytes of a segment of the base: copied on the server.
        if let Some(md5) = &md5
            && let Some(from) = ctx.base.get(&(md5.clone(), len))
            && let Some(done) = copy_in(&ctx, &mut seg, from, SegKind::Copied, &label).await?
        {
            return Ok(done);
        }

        // 4. PUT with retries.
        let rec = Mutex::new(seg);
        let step = send(&ctx, &rec, &label, md5.as_deref(), &probe_first).await;
        seg = rec.into_inner().expect("segment lock");
        match step? {
            Step::Sent => return confirm(&ctx, seg, Outcome::Sent).await,
            Step::Split => continue,
        }
    }
}

/// Whether the segment's first block is all zeros (only when zeros are skipped: a
/// scan then cuts the run out before anything is sent). A read error says yes: the
/// scan reports it.
async fn starts_with_zeros(ctx: &Ctx, off: u64, len: u64) -> bool {
    if ctx.zero_rule.is_none() {
        return false;
    }
    let (file, n) = (ctx.file.clone(), len.min(crate::zeros::BLOCK) as usize);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; n];
        file.read_exact_at(&mut buf, off).map_or(true, |_| buf.iter().all(|&b| b == 0))
    })
    .await
    .unwrap_or(true)
}

/// Reads and hashes a segment on a blocking thread, cutting out zero runs.
async fn scan(ctx: &Ctx, off: u64, len: u64) -> std::io::Result<Vec<crate::zeros::Piece>> {
    let (file, min, ends) = (ctx.file.clone(), ctx.zero_rule, off + len == ctx.file_size);
    let disk = ctx.read_mode.disk.clone();
    tokio::task::spawn_blocking(move || disk.time(len, || crate::zeros::scan_range(&file, off, len, min, ends)))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
