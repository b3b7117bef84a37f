//! Segments the server makes without their bytes crossing the link: zeros (an SLO
//! points at the zero object; a DLO's are server-side copies of a zero maker), and
//! server-side copies of the same bytes (a repeat's original in a DLO, a segment of
//! `--base`).

use super::ctx::{Ctx, Outcome};
use super::failure::copy_failed;
use super::record::confirm;
use crate::error::Result;
use crate::journal::{SegKind, SegmentRecord};
use crate::swift::ListEntry;

/// A zero segment: nothing to send. An SLO's is confirmed as it is (its manifest
/// points at the job's zero object); a DLO's is adopted if the server holds it
/// whole, else made by a server-side copy.
pub(super) async fn zero(ctx: &Ctx, mut seg: SegmentRecord, listed: Option<ListEntry>) -> Result<Outcome> {
    let Some(zeros) = &ctx.zeros else {
        return confirm(ctx, seg, Outcome::Zero).await;
    };
    let label = format!("{} of job {} (zeros)", ctx.naming.label(&seg), ctx.job_id);
    let md5 = crate::runtime::blocking(|| zeros.md5(seg.length));
    seg.md5 = Some(md5.clone());
    if listed.or_else(|| ctx.hint(&seg)).is_some_and(|e| e.hash == md5 && e.bytes == seg.length) {
        return confirm(ctx, seg, Outcome::Adopted).await;
    }
    let name = ctx.naming.name(&seg);
    zeros
        .copy_to(&ctx.swift, &ctx.naming.container, &name, seg.length)
        .await
        .map_err(|e| copy_failed(ctx, &label, e))?;
    ctx.link_ok();
    confirm(ctx, seg, Outcome::Zero).await
}

/// Makes `seg` on the server by copying `from` (container, name), which holds the
/// same bytes (a repeat's original in a DLO, or a segment of the base), into the
/// segment's own object, and confirms it as `kind`. `Ok(None)` when `from` is gone
/// (deleted since): the segment is sent instead.
pub(super) async fn copy_in(
    ctx: &Ctx,
    seg: &mut SegmentRecord,
    from: &(String, String),
    kind: SegKind,
    label: &str,
) -> Result<Option<Outcome>> {
    let to = ctx.naming.name(seg);
    let md5 = seg.md5.clone().unwrap_or_default();
    let op = format!("COPY {label} from {}/{}", from.0, from.1);
    match ctx.swift.copy(&op, &ctx.naming.container, &to, (&from.0, &from.1), None, &md5).await {
        Ok(()) => {}
        Err(e) if e.status == Some(404) => {
            tracing::warn!("{label}: {}/{} is gone: sending the segment instead", from.0, from.1);
            return Ok(None);
        }
        Err(e) => return Err(copy_failed(ctx, label, e)),
    }
    ctx.link_ok();
    seg.kind = kind;
    let how = if kind == SegKind::Copied { Outcome::Copied } else { Outcome::Repeat };
    confirm(ctx, seg.clone(), how).await.map(Some)
}
