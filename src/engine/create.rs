//! `k5up upload`: create the planned job's journal (or continue the same job,
//! `--replace` an older one), then run it.

use std::fs::File;

use super::Engine;
use crate::error::Result;
use crate::journal::{JobRecord, Journal};
use crate::status::StatusView;

use super::new_job::{Planned, UploadRequest, first_cuts};

impl Engine {
    /// `k5up upload`: creates the job (or continues the same one) and runs it.
    pub(crate) async fn upload(&self, req: &UploadRequest) -> Result<StatusView> {
        let (_path, mut file, mut planned) = self.plan(req).await?;
        let mut replaced = vec![];
        let of_target = deletes_base(req, &planned.job);
        if planned.existing {
            tracing::info!("job {} exists: continuing it", planned.job.id);
            let j = self.open_job(&planned.job.id)?;
            let changed = match super::run::check_identity(&j.job()?, &planned.opened) {
                Err(e) => Some(e),
                Ok(()) => self.content_check(&j, &file)?,
            };
            match changed {
                None => return self.continue_job(j, file, planned, of_target).await,
                Some(e) if !req.replace => return Err(e),
                Some(e) => {
                    // The same file name, rewritten with the same size and mtime: a
                    // new job (new names) in the old one's place; the old object
                    // stays whole until the new one is verified.
                    tracing::warn!("{}: --replace uploads it as a new job", e.msg);
                    replaced = super::replace::replaced_of(&j)?;
                    self.drop_replaced(j)?;
                    (_, file, planned) = self.plan(req).await?;
                }
            }
        }
        let stamp = super::content::stamp_of(&file, &planned.job.file)?;
        let others = if req.replace {
            let j = &planned.job;
            self.owners_of(&j.storage_url, &j.container, &j.object, &j.id)?
        } else {
            vec![]
        };
        // Held while the new job is created: no other run can start them meanwhile.
        let held: Vec<Journal> = others.iter().map(|o| self.open_job(&o.job)).collect::<Result<_>>()?;
        for old in &held {
            super::replace::merge(&mut replaced, super::replace::replaced_of(old)?);
        }
        if of_target {
            let of_base = super::replace::base_replaced(&planned.job, &super::naming_of(&planned.job), &planned.base);
            say_base_replaced(&planned.job, &of_base);
            super::replace::merge(&mut replaced, of_base);
        }
        let store = planned.store.traits;
        let j = self.root.create(&planned.job, &store, first_cuts(&planned.job, &store, Some(&file), &planned.base))?;
        // Durable before the old journals go: the old segments are this job's to delete.
        j.put_source_stamp(&stamp)?;
        j.put_replaces(&replaced)?;
        if !planned.base.is_empty() {
            j.put_base(&planned.base)?;
            j.flush()?;
        }
        for old in held {
            self.drop_replaced(old)?;
        }
        if let Some(s) = &planned.share {
            Self::merge_share(&j, s)?;
        }
        self.run(j, file, &planned.opened).await
    }

    /// The same `upload` command again, on the same file: the job goes on.
    async fn continue_job(&self, j: Journal, file: File, planned: Planned, deletes_base: bool) -> Result<StatusView> {
        if !planned.base.is_empty() && j.base()?.is_empty() {
            // A base given late still serves: unchanged segments are copied.
            j.put_base(&planned.base)?;
        }
        let mut job = j.job()?;
        if deletes_base && job.manifest_etag.is_none() {
            // The object it replaces (given as the base late, or read again): its
            // segments go once this job's object is verified.
            let of_base = super::replace::base_replaced(&job, &super::naming_of(&job), &planned.base);
            let mut replaced = j.replaces()?;
            let before = replaced.len();
            super::replace::merge(&mut replaced, of_base);
            if replaced.len() > before {
                say_base_replaced(&job, &replaced[before..]);
                j.put_replaces(&replaced)?;
            }
        }
        if job.import != planned.job.import || job.digests != planned.job.digests {
            job.import = planned.job.import.clone();
            job.digests = planned.job.digests.clone();
            j.put_job(&job)?;
            j.flush()?;
        }
        if let Some(s) = &planned.share {
            Self::merge_share(&j, s)?;
        }
        self.run(j, file, &planned.opened).await
    }

    /// The other jobs of this journal that upload to `container/object` of the
    /// account at `storage_url` (read without taking their locks).
    pub(super) fn owners_of(
        &self,
        storage_url: &str,
        container: &str,
        object: &str,
        except: &str,
    ) -> Result<Vec<StatusView>> {
        let mut out = vec![];
        for id in self.root.job_ids()? {
            if id == except {
                continue;
            }
            let v = match crate::status::read(&self.root, &id) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("job {id}: {e} (not checked for the same target)");
                    continue;
                }
            };
            if v.storage_url == storage_url && v.container == container && v.object == object {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// True when `--base` names the object the job writes (a new version in its place)
/// and `--replace` says the old version may go: its segments are deleted once the new
/// object is verified. Without `--replace` they are left (another manifest, a copy of
/// the old one, may name them), and this says so (asked once per run).
fn deletes_base(req: &UploadRequest, job: &JobRecord) -> bool {
    let target = req.base.as_ref().is_some_and(|(c, o)| *c == job.container && *o == job.object);
    if target && !req.replace {
        tracing::warn!(
            "job {}: --base is {}/{} itself, without --replace: the old version's segments in {} stay once the new object is written (add --replace to have k5up delete them once it is verified)",
            job.id,
            job.container,
            job.object,
            job.segment_container
        );
    }
    target && req.replace
}

/// Says which of the base's segments the job will delete once its object is verified.
fn say_base_replaced(job: &JobRecord, of_base: &[crate::journal::Replaced]) {
    if of_base.is_empty() {
        return;
    }
    tracing::info!(
        "job {}: --base is {}/{} itself: the segments of the version it replaces ({} in {}) are deleted once the new object is verified",
        job.id,
        job.container,
        job.object,
        of_base.iter().map(|r| format!("{}*", r.segment_prefix)).collect::<Vec<_>>().join(", "),
        job.segment_container
    );
}
