//! `abort`: a job's segments and journal deleted, unless the object on the server
//! is a manifest over them.

use super::{Engine, Settings, finish, naming_of};
use crate::error::{Error, ErrorKind, Result};

impl Engine {
    /// `k5up abort JOB [--purge]`: removes the job's journal entry and deletes its
    /// segments (and sub-manifests), unless the object on the server is a manifest
    /// over them: then the object and its segments are kept (whatever the journal's
    /// phase says: a manifest written before an import failed or was interrupted is
    /// a readable object). `purge` deletes that object as well.
    pub(crate) async fn abort(&self, id: &str, purge: bool) -> Result<String> {
        let journal = self.open_job(id)?;
        let job = journal.job()?;
        let naming = naming_of(&job);
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable).context(format!("abort of job {id}"));
        let target = format!("{}/{}", job.container, job.object);
        let ours = self.manifest_over(&job, &naming, &journal).await?;
        // An object this job was replacing (`--replace`): while its manifest is not
        // this job's, it is still the old object, whole, and stays so; once this
        // job's manifest is there, the old segments are unused and this job's to delete.
        let replaced = journal.replaces()?;
        let replaced_note = match (replaced.is_empty(), ours) {
            (true, _) => String::new(),
            (false, true) => {
                self.delete_replaced(&journal, &job).await?;
                "; the segments of the object it replaced are deleted".to_string()
            }
            (false, false) => format!(
                "; {target} still holds the version it was replacing (job {}): that object and its segments are kept, untouched",
                replaced.iter().map(|r| r.job.as_str()).collect::<Vec<_>>().join(", ")
            ),
        };
        if ours && !purge {
            self.root.remove(journal)?;
            return Ok(format!(
                "job {id}: {target} on the server is a manifest over this job's segments: the object and its segments are kept, the journal entry is removed (`k5up abort --purge` deletes them too){replaced_note}"
            ));
        }
        let mut object_note = String::new();
        if ours {
            if self.swift.delete(&job.container, &job.object, "").await.map_err(se)? {
                object_note = format!("{target} deleted, ");
            }
        } else if purge && self.swift.head(&job.container, &job.object).await.map_err(se)?.is_some() {
            object_note = format!("{target} is not a manifest of this job: left as it is; ");
        }
        let conc = self.given.concurrency.unwrap_or(Settings::default().concurrency);
        let finish::Deleted { deleted, others } =
            finish::delete_own(&self.swift, &naming, &Default::default(), conc).await.map_err(se)?;
        self.root.remove(journal)?;
        let others_note = if others > 0 {
            format!(" ({others} object(s) of other names under its prefix left alone)")
        } else {
            String::new()
        };
        Ok(format!(
            "job {id} aborted: {object_note}{deleted} segment object(s) deleted from {}{others_note}, journal entry removed{replaced_note}",
            naming.container
        ))
    }

    /// True when the object on the server is this job's manifest: a DLO naming its
    /// segment prefix, an SLO whose entries are under that prefix, or (a job without
    /// segments) the empty object.
    async fn manifest_over(
        &self,
        job: &crate::journal::JobRecord,
        naming: &crate::names::SegmentNaming,
        journal: &crate::journal::Journal,
    ) -> Result<bool> {
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable).context(format!("job {}", job.id));
        let Some(h) = self.swift.head(&job.container, &job.object).await.map_err(se)? else { return Ok(false) };
        if job.plan.segment_count == 0 {
            return Ok(h.size == 0 && !h.slo && h.dlo_manifest.is_none());
        }
        if let Some(m) = &h.dlo_manifest {
            let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_string();
            return Ok(decoded(m) == format!("{}/{}", naming.container, naming.prefix));
        }
        if !h.slo {
            return Ok(false);
        }
        if !journal.store()?.manifest_readable {
            // The store cannot give the manifest back (Ceph RGW): the SLO is this job's
            // when its ETag is that of the manifest the journal describes (the MD5 of
            // its segments' ETags, in order).
            let want = super::finish::expected_etag(job, &journal.segments()?, naming);
            return Ok(h.etag.eq_ignore_ascii_case(&want));
        }
        let resp = self.swift.get(&job.container, &job.object, "multipart-manifest=get").await.map_err(se)?;
        let unreadable = |e: String| {
            Error::resumable(format!("job {}: unreadable manifest of {}/{}: {e}", job.id, job.container, job.object))
        };
        let body = resp.bytes().await.map_err(|e| unreadable(e.to_string()).caused_by(e))?;
        let entries =
            crate::swift::manifest::parse_stored(&body).map_err(|e| unreadable(e.to_string()).caused_by(e))?;
        let ours = [
            format!("{}/{}", naming.container, naming.prefix),
            format!("{}/{}", naming.container, naming.zero_prefix()),
        ];
        Ok(entries.iter().any(|e| ours.iter().any(|o| e.path.starts_with(o))))
    }
}
