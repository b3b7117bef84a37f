//! A new job's plan: what the user asked for, the file opened and identified, the
//! server's limits, the first cuts, the job id (or the same job found again), the
//! import and the target checked before anything is written.

use std::fs::File;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{Contact, Engine, first_contact, now_unix};
use crate::digest::Algo;
use crate::error::{Error, Result};
use crate::import::ImportSpec;
use crate::journal::{BaseSegment, JobRecord, Phase, SegKind, SegmentRecord};
use crate::names::{SegmentNaming, check_container, check_object};
use crate::plan::{self, ManifestKind, Plan};
use crate::source::{self, FileIdentity};

use super::importing::digests_for;

/// What the user asked to upload.
#[derive(Debug, Clone)]
pub(crate) struct UploadRequest {
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
pub(crate) struct Planned {
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
    /// What the store does (the job's, for a job that exists).
    pub store: super::store::StoreFound,
}

/// The short, deterministic id of a job: the file's identity and the target.
pub(crate) fn job_id(identity: &FileIdentity, storage_url: &str, container: &str, object: &str) -> String {
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
    store: &crate::swift::StoreTraits,
    file: Option<&File>,
    base: &[BaseSegment],
) -> Box<dyn Iterator<Item = SegmentRecord>> {
    let p: Plan = job.plan.clone();
    if super::naming_of(job).ranged && !base.is_empty() {
        let lens: Vec<u64> = base.iter().map(|b| b.length).collect();
        Box::new(p.cuts_along(&lens).into_iter().map(|(off, len)| SegmentRecord::at(off, len)))
    } else if super::naming_of(job).ranged {
        let rule = super::zero_rule(job, store);
        let holes = match (rule, file) {
            (Some(r), Some(f)) => crate::zeros::holes(f, p.file_size, r.min_run),
            _ => vec![],
        };
        let unit = rule.and_then(|r| r.unit);
        let cuts = if p.manifest == ManifestKind::Slo && !store.nested_slo {
            // Every cut is an entry of the one manifest this store takes.
            let (cuts, given_up) = p.cuts_around_within(&holes, unit, p.per_manifest);
            if given_up > 0 {
                tracing::warn!(
                    "job {}: {} of holes sent as data: skipping every hole would need more than the {} entries one manifest holds, and this store takes no nested manifests (--manifest dlo skips them all)",
                    job.id,
                    crate::units::format_size(given_up),
                    p.per_manifest
                );
            }
            cuts
        } else {
            p.cuts_around(&holes, unit)
        };
        let skipped: u64 = cuts.iter().filter(|c| c.2).map(|c| c.1).sum();
        if skipped > 0 {
            tracing::info!(
                "job {}: {} in holes of the file: not read, not sent",
                job.id,
                crate::units::format_size(skipped)
            );
        }
        Box::new(cuts.into_iter().map(|(off, len, zero)| {
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
    pub(crate) async fn plan(&self, req: &UploadRequest) -> Result<(PathBuf, File, Planned)> {
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
            let store =
                super::store::StoreFound { traits: self.root.job_store(&id)?, how: "as when the job was planned" };
            let base = self.base_segments(req, &store.traits).await?;
            if share.is_some() && job.import.is_none() {
                return Err(Error::input(format!("--share-with needs an import, and job {id} has none"))
                    .hint("add --import glance (or --import k5)"));
            }
            let planned =
                Planned { job, existing: true, manifest_levels: levels, opened: ident, holes: 0, base, share, store };
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
        let store = self.store_for(&storage_url, &req.container, &naming.container).await?;
        let plan = plan::plan(ident.size, &limits, req.segment_size, kind, entry_path_len)?;
        if plan.manifest_levels() > 1 && !store.traits.nested_slo {
            return Err(Error::input(format!(
                "{} in segments of at most {} make {} segments: more than one manifest holds ({}), and this object store does not take nested manifests",
                crate::units::format_size(ident.size),
                crate::units::format_size(plan.segment_size),
                plan.segment_count,
                plan.per_manifest
            ))
            .hint("use --manifest dlo (or a larger --segment-size, up to the store's max_file_size)"));
        }
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
        let base = self.base_segments(req, &store.traits).await?;
        let holes = match super::zero_rule(&job, &store.traits) {
            Some(r) if base.is_empty() => {
                let holes = crate::zeros::holes(&file, job.plan.file_size, r.min_run);
                let unit = r.unit.unwrap_or(1);
                holes.iter().map(|h| h.1 / unit * unit).sum()
            }
            _ => 0,
        };
        let planned =
            Planned { job, existing: false, manifest_levels: levels, opened: ident, holes, base, share, store };
        Ok((path, file, planned))
    }

    /// The segments of `--base`, if given.
    async fn base_segments(&self, req: &UploadRequest, store: &crate::swift::StoreTraits) -> Result<Vec<BaseSegment>> {
        match &req.base {
            Some((c, o)) => {
                super::base::segments_of(&self.swift, store, c, o, |etag| self.journaled_segments(c, o, etag)).await
            }
            None => Ok(vec![]),
        }
    }

    /// The segments of `container/object` as the job of this journal that wrote the
    /// version with ETag `etag` keeps them (for a store that cannot give an SLO
    /// manifest back), in order.
    fn journaled_segments(&self, container: &str, object: &str, etag: &str) -> Option<Vec<BaseSegment>> {
        for id in self.root.job_ids().ok()? {
            let Ok(Some(j)) = self.root.open_reader(&id) else { continue };
            let Ok(job) = j.job() else { continue };
            if job.container != container
                || job.object != object
                || !job.manifest_etag.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(etag))
            {
                continue;
            }
            return Some(super::base::as_base(&job, &j.segments().ok()?));
        }
        None
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
}
