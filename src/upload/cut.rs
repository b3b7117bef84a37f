//! Cutting a segment to what the link carries: the head is sent now, the rest goes
//! back to the pool, both journaled in one batch.

use super::ctx::Ctx;
use crate::error::Result;
use crate::journal::SegmentRecord;

impl Ctx {
    /// Cuts `seg` to the size the link has lately carried whole, if it is larger:
    /// returns the head (the same offset), journals both pieces at once, and hands
    /// the rest back to the pool. The head keeps the segment's attempts and bytes sent.
    pub(super) async fn cut(&self, seg: SegmentRecord) -> Result<SegmentRecord> {
        let (sent, streams, secs) = self.link_counters();
        let room = self
            .split_cap
            .is_none_or(|cap| self.progress.segments_total.load(std::sync::atomic::Ordering::Relaxed) < cap);
        let Some(size) =
            (self.naming.ranged && room).then(|| self.sizer.cut(seg.length, sent, streams, secs)).flatten()
        else {
            return Ok(seg);
        };
        let head = SegmentRecord { length: size, md5: None, inflight: 0, ..seg.clone() };
        let rest = SegmentRecord::at(seg.offset + size, seg.length - size);
        // Say why it was cut: an outage only when there was one this run.
        let why = if self.sizer.after_outage() {
            "as the link lately carries about that much between outages".to_string()
        } else {
            format!(
                "as one stream has sent about that much per {} s so far (a slow start: segments grow with the rate)",
                crate::transfer::sizer::HORIZON_SECS
            )
        };
        tracing::info!(
            "job {}: {} split: {} now, the rest ({}) later, {why}",
            self.job_id,
            self.naming.label(&seg),
            crate::units::format_size(size),
            crate::units::format_size(rest.length)
        );
        let (j, pieces) = (self.journal.clone(), [head.clone(), rest.clone()]);
        crate::runtime::off_thread("journal write", move || j.apply(&pieces, &[])).await?;
        let n = self.progress.splits.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let j = self.journal.clone();
        crate::runtime::blocking(|| j.put_splits(n))?;
        self.progress.segments_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.requeue.send((rest, None));
        Ok(head)
    }
}
