//! Whether a finished job's object is still whole on the server: its size and
//! ETag, every segment as journaled (one listing), and the SLO's zero object.

use super::{Engine, naming_of, reconcile};
use crate::error::{ErrorKind, Result};
use crate::journal::{JobRecord, Journal};
use crate::plan::ManifestKind;

impl Engine {
    /// True when the object of a finished job is on the server with the size and
    /// ETag its manifest was written with. Otherwise says what the server holds: the
    /// run then rebuilds it (segments still whole on the server are adopted, the
    /// manifest written again).
    pub(super) async fn object_intact(&self, job: &JobRecord, journal: &Journal) -> Result<bool> {
        let want = job.manifest_etag.as_deref().unwrap_or_default();
        let head =
            self.swift.head(&job.container, &job.object).await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let seen = match head {
            Some(h) if h.size == job.plan.file_size && h.etag.eq_ignore_ascii_case(want) => {
                // The manifest is there; its segments may not be (deleted or
                // overwritten behind k5up's back: a GET would answer 409 or end short).
                let bad = self.segments_not_intact(job, journal).await?;
                if bad.is_empty() {
                    return Ok(true);
                }
                format!(
                    "has its manifest, but {} of its segment(s) are missing or different ({})",
                    bad.len(),
                    bad.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            Some(h) => format!("has size {} and ETag {} (expected {} and {want})", h.size, h.etag, job.plan.file_size),
            None => "is missing".to_string(),
        };
        tracing::warn!(
            "job {}: {}/{} {seen} on the server: rebuilding it (segments still whole there are not sent again)",
            job.id,
            job.container,
            job.object
        );
        Ok(false)
    }

    /// The segments of a finished job that the server does not hold as journaled
    /// (name, size and ETag), from one listing of the prefix per 10,000 segments,
    /// and the SLO's zero object if it has zero segments. Labels, in file order.
    pub(super) async fn segments_not_intact(&self, job: &JobRecord, journal: &Journal) -> Result<Vec<String>> {
        let naming = naming_of(job);
        let segs = journal.segments()?;
        if segs.is_empty() {
            return Ok(vec![]);
        }
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable);
        let listing = self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?;
        let slo = job.plan.manifest == ManifestKind::Slo;
        let mut bad: Vec<String> =
            reconcile::missing_on_server(&segs, &listing, &naming, slo).into_iter().map(|s| naming.label(s)).collect();
        if slo && let Some(z) = segs.iter().filter(|s| s.is_zero()).map(|s| s.length).max() {
            let name = naming.zero_name(&format!("object+{z}"));
            let h = self.swift.head(&naming.container, &name).await.map_err(se)?;
            let md5 = crate::runtime::blocking(|| crate::zeros::md5_of_zeros(z));
            if !h.is_some_and(|h| h.size == z && h.etag.eq_ignore_ascii_case(&md5)) {
                bad.push(format!("zero object {name}"));
            }
        }
        Ok(bad)
    }
}
