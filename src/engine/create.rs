//! Creating a job: open the file, log in, plan (or find the same job), check the
//! import and the target, write the journal; then run it.

use std::fs::File;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{Contact, Engine, first_contact, now_unix};
use crate::digest::Algo;
use crate::error::{Error, Result};
use crate::import::ImportSpec;
use crate::journal::{BaseSegment, JobRecord, Journal, Phase, SegKind, SegmentRecord};
use crate::names::{SegmentNaming, check_container, check_object};
use crate::plan::{self, ManifestKind, Plan};
use crate::source::{self, FileIdentity};
use crate::status::StatusView;

use super::importing::digests_for;

/// What the user asked to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    /// The image file.
    pub file: PathBuf,
    /// Target container.
    pub container: String,
    /// Target object (default: the file's name).
    pub object: Option<String>,
    /// `--segment-size`.
    pub segment_size: Option<u64>,
    /// `--manifest` (default: SLO when the server offers it, else DLO).
    pub manifest: Option<ManifestKind>,
    /// The image import to run after the upload (disk format and name filled in when empty).
    pub import: Option<ImportSpec>,
    /// `--digest`: whole-image digests to compute besides those the import needs.
    pub digests: Vec<Algo>,
    /// `--replace`: another job targeting the same object is dropped instead of
    /// refusing this one.
    pub replace: bool,
    /// `--base CONTAINER/OBJECT`: the previous version of the image on the server.
    pub base: Option<(String, String)>,
    /// `--share-with`: projects to share the imported image with.
    pub share: Option<super::ShareRequest>,
}

/// A job as planned (what `--dry-run` prints).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The job record (new, or the journaled one).
    pub job: JobRecord,
    /// True when the journal already had this job.
    pub existing: bool,
    /// Levels of SLO manifests (1 = flat).
    pub manifest_levels: u32,
    /// The file's identity as read when it was opened for this run.
    pub opened: FileIdentity,
    /// Bytes of the file's holes that will not be read or sent (a new job that skips
    /// zeros); runs of written zeros are found later, while hashing.
    pub holes: u64,
    /// The segments of `--base`.
    pub base: Vec<BaseSegment>,
    /// The projects to share the image with (resolved in Keystone).
    pub share: Option<crate::journal::ShareState>,
}

/// The short, deterministic id of a job: the file's identity and the target.
pub fn job_id(identity: &FileIdentity, storage_url: &str, container: &str, object: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        identity.dev.to_string(),
        identity.ino.to_string(),
        identity.size.to_string(),
        identity.mtime_ns.to_string(),
        storage_url.to_string(),
        container.to_string(),
        object.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

fn new_segment(index: u64, offset: u64, length: u64) -> SegmentRecord {
    SegmentRecord::new(index, offset, length, SegKind::Data)
}

/// The segment records of a job as planned: keyed by offset for names that say
/// their bytes (the plan's cuts, around the holes of `file` when the job skips
/// zeros, or along the segments of its `base`), by index for the uniform plans of
/// k5up 0.1.
pub(super) fn first_cuts(
    job: &JobRecord,
    file: Option<&File>,
    base: &[BaseSegment],
) -> Box<dyn Iterator<Item = SegmentRecord>> {
    let p: Plan = job.plan.clone();
    if super::naming_of(job).ranged && !base.is_empty() {
        let lens: Vec<u64> = base.iter().map(|b| b.length).collect();
        Box::new(p.cuts_along(&lens).into_iter().map(|(off, len)| SegmentRecord::at(off, len)))
    } else if super::naming_of(job).ranged {
        let holes = match (super::zero_run(job), file) {
            (Some(min), Some(f)) => crate::zeros::holes(f, p.file_size, min),
            _ => vec![],
        };
        if !holes.is_empty() {
            let bytes: u64 = holes.iter().map(|h| h.1).sum();
            tracing::info!(
                "job {}: {} in holes of the file: not read, not sent",
                job.id,
                crate::units::format_size(bytes)
            );
        }
        Box::new(p.cuts_around(&holes).into_iter().map(|(off, len, zero)| {
            SegmentRecord::new(off, off, len, if zero { SegKind::Zero } else { SegKind::Data })
        }))
    } else {
        Box::new((0..p.segment_count).map(move |i| {
            let (off, len) = p.segment(i);
            new_segment(i, off, len)
        }))
    }
}

impl Engine {
    /// Runs `f` (work before a run starts: login, planning) until Ctrl-C or SIGTERM,
    /// which end it at once: nothing has been changed yet.
    pub(super) async fn or_cancel<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let mut c = self.cancel.clone();
        tokio::select! {
            r = f => r,
            _ = crate::runtime::cancelled(&mut c) => Err(Error::resumable("interrupted before the upload started")
                .hint("nothing was changed; run the same command again")),
        }
    }

    /// Plans an upload: opens the file, logs in, reads the limits, and finds or
    /// designs the job. Creates nothing. Ctrl-C ends it at once.
    pub async fn plan(&self, req: &UploadRequest) -> Result<(PathBuf, File, Planned)> {
        self.or_cancel(self.plan_inner(req)).await
    }

    pub(super) async fn plan_inner(&self, req: &UploadRequest) -> Result<(PathBuf, File, Planned)> {
        let (path, file, ident) = source::open(&req.file)?;
        let object = match &req.object {
            Some(o) => o.clone(),
            // The name the user typed (a symlink's own name), not its target's.
            None => match req.file.file_name().map(|n| n.to_str()) {
                Some(Some(n)) => n.to_string(),
                Some(None) => {
                    return Err(Error::input(format!(
                        "{}: the file name is not valid UTF-8, and Swift object names are",
                        req.file.display()
                    ))
                    .hint("give the object a name with -o NAME (the file itself is read as it is)"));
                }
                None => {
                    return Err(Error::input(format!("{}: no file name to name the object by", req.file.display()))
                        .hint("give the object a name with -o NAME"));
                }
            },
        };
        check_container(&req.container)?;
        check_object(&object)?;
        // Refused imports are refused now, not after the upload.
        let import = match req.import.clone() {
            Some(spec) => Some(crate::import::complete(spec, &file, ident.size, &object)?),
            None => None,
        };
        let digests = digests_for(import.as_ref(), &req.digests);
        let storage_url = self.storage_url_first(self.known_upload(&path, &req.container, &object)).await?;
        // The import service must answer these credentials now, not after the upload.
        if let Some(spec) = &import {
            crate::import::preflight(&self.swift, spec).await?;
        }
        let id = job_id(&ident, &storage_url, &req.container, &object);
        // Projects to share with are found in Keystone now: an unknown one is refused before the upload.
        let share = match &req.share {
            Some(r) if import.is_none() && !self.root.exists(&id) => {
                return Err(Error::input(format!(
                    "--share-with {} needs an import: only an image can be shared",
                    r.projects.join(",")
                ))
                .hint("add --import glance (or --import k5)"));
            }
            Some(r) => Some(self.share_state(r).await?),
            None => None,
        };
        if self.root.exists(&id) {
            // Read only: a dry run neither locks the job nor rebuilds its journal.
            // A damaged journal says itself how it is rebuilt; other failures keep their hint.
            let job = self.root.read_job(&id)?;
            if req.segment_size.is_some_and(|s| s != job.plan.segment_size) {
                return Err(Error::input(format!(
                    "job {id} exists with segment size {}; --segment-size differs",
                    job.plan.segment_size
                ))
                .hint(format!("omit --segment-size to continue it, or `k5up abort {id}` first")));
            }
            if req.manifest.is_some_and(|m| m != job.plan.manifest) {
                return Err(Error::input(format!(
                    "job {id} exists with manifest {}; --manifest differs",
                    job.plan.manifest.as_str()
                ))
                .hint(format!("omit --manifest to continue it, or `k5up abort {id}` first")));
            }
            let mut job = job;
            if import.is_some() && import != job.import {
                job.import = import;
            }
            job.digests = digests_for(job.import.as_ref(), &[job.digests.clone(), digests].concat());
            let levels = job.plan.manifest_levels();
            let base = self.base_segments(req).await?;
            if share.is_some() && job.import.is_none() {
                return Err(Error::input(format!("--share-with needs an import, and job {id} has none"))
                    .hint("add --import glance (or --import k5)"));
            }
            let planned =
                Planned { job, existing: true, manifest_levels: levels, opened: ident, holes: 0, base, share };
            return Ok((path, file, planned));
        }
        let others = self.owners_of(&storage_url, &req.container, &object, &id)?;
        if let Some(v) = others.first() {
            if v.running {
                return Err(self.root.busy(&v.job).context(format!("{}/{} (from {})", v.container, v.object, v.file)));
            }
            if !req.replace {
                return Err(Error::input(format!(
                    "{}/{} belongs to job {} (phase {}, file {}); a second job for the same object would overwrite one with the other",
                    v.container, v.object, v.job, v.phase, v.file
                ))
                .hint(format!(
                    "`k5up resume {0}` continues it; `k5up abort {0}` drops it; or add --replace to upload this file in its place",
                    v.job
                )));
            }
        }
        // The first request to the object store itself.
        let limits =
            self.swift.first_contact().limits().await.map_err(|e| first_contact(&self.swift, e, Contact::Storage))?;
        let kind = req.manifest.unwrap_or(if limits.slo.is_some() { ManifestKind::Slo } else { ManifestKind::Dlo });
        // Names of this job's own: a new build with the same size and mtime, or the
        // same file uploaded again after its journal was lost, never writes over the
        // segments of another job (of a live object).
        let nonce = crate::names::new_nonce()?;
        let naming =
            SegmentNaming::new(&req.container, &object, kind == ManifestKind::Slo, ident.mtime_ns, ident.size, &nonce)?;
        // The longest entry path a manifest may hold, to keep manifests under their byte limit.
        let entry_path_len = naming.container.len() + naming.name_at(ident.size, ident.size).len() + 2;
        let plan = plan::plan(ident.size, &limits, req.segment_size, kind, entry_path_len)?;
        let job = JobRecord {
            id,
            created_unix: now_unix(),
            file: crate::model::path_record(&path),
            identity: ident.clone(),
            auth: self.swift.auth().describe(),
            storage_url,
            container: req.container.clone(),
            object,
            segment_container: naming.container.clone(),
            segment_prefix: naming.prefix.clone(),
            plan: plan.clone(),
            limits,
            phase: Phase::Uploading,
            manifest_etag: None,
            bytes_sent_other: 0,
            last_error: None,
            runs: 0,
            digests,
            import,
            direction: crate::model::Direction::Upload,
        };
        let levels = plan.manifest_levels();
        let base = self.base_segments(req).await?;
        let holes = match super::zero_run(&job) {
            Some(min) if base.is_empty() => {
                crate::zeros::holes(&file, job.plan.file_size, min).iter().map(|h| h.1).sum()
            }
            _ => 0,
        };
        Ok((path, file, Planned { job, existing: false, manifest_levels: levels, opened: ident, holes, base, share }))
    }

    /// The segments of `--base`, if given.
    async fn base_segments(&self, req: &UploadRequest) -> Result<Vec<BaseSegment>> {
        match &req.base {
            Some((c, o)) => super::base::segments_of(&self.swift, c, o).await,
            None => Ok(vec![]),
        }
    }

    /// `k5up upload`: creates the job (or continues the same one) and runs it.
    pub async fn upload(&self, req: &UploadRequest) -> Result<StatusView> {
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
        let j = self.root.create(&planned.job, first_cuts(&planned.job, Some(&file), &planned.base))?;
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

    /// True when a job of this journal uploads `file` to `container/object` with
    /// these credentials: the same command again, known before the login tells the
    /// job's id (a server that does not answer is then perhaps an outage, not a
    /// wrong URL). Read only: no lock is taken from a running job.
    fn known_upload(&self, file: &std::path::Path, container: &str, object: &str) -> bool {
        let Ok(ids) = self.root.job_ids() else { return false };
        let auth = self.swift.auth().describe();
        ids.iter().any(|id| {
            self.root.read_birth(id).is_ok_and(|j| {
                j.auth == auth
                    && j.container == container
                    && j.object == object
                    && Some(j.file.as_str()) == file.to_str()
            })
        })
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
