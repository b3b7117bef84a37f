//! The job lifecycle: create or reopen a job, reconcile it with the server, upload
//! what is missing, write and verify the manifest.

mod abort;
pub(crate) mod base;
mod content;
mod create;
mod finish;
mod importing;
mod intact;
mod new_job;
mod read_back;
mod reconcile;
mod replace;
mod run;
mod send;
mod settings;
mod sharing;
mod store;
mod verify;

use std::fs::File;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

pub(crate) use new_job::{Planned, UploadRequest};
pub(crate) use settings::{Given, Settings};
pub(crate) use sharing::ShareRequest;
pub(crate) use verify::VerifyReport;

use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JobRecord, Journal, Opened, Phase, Root};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::retry::Class;
use crate::source;
use crate::status::StatusView;
use crate::swift::{Origin, Swift, SwiftError};
use crate::transfer::progress::Progress;

/// Runs jobs against one Swift account and one journal.
#[derive(Debug)]
pub(crate) struct Engine {
    /// The journal.
    pub root: Root,
    /// The storage client.
    pub swift: Swift,
    /// The tunables given on the command line (the rest come from the job).
    pub given: Given,
    /// The tunables of the job being run (set when a run starts).
    pub active: std::sync::Mutex<Settings>,
    /// Live counters of the current run.
    pub progress: Arc<Progress>,
    /// Turns true on Ctrl-C / SIGTERM.
    pub cancel: watch::Receiver<bool>,
}

/// Makes the journal's writes durable, off the async worker.
fn flush(journal: &Journal) -> Result<()> {
    crate::runtime::blocking(|| journal.flush())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn naming_of(job: &JobRecord) -> SegmentNaming {
    SegmentNaming::of_job(&job.segment_container, &job.segment_prefix)
}

/// How `job` skips zeros on a store that does `store`, or `None` when it sends
/// every byte: jobs of k5up 0.1 (index names), and DLO jobs on a server without
/// SLO (a DLO's zero segments are copied from an SLO of a zero seed).
pub(crate) fn zero_rule(job: &JobRecord, store: &crate::swift::StoreTraits) -> Option<crate::zeros::ZeroRule> {
    use crate::zeros::ZeroRule;
    if !naming_of(job).ranged {
        return None;
    }
    let min_run = match job.plan.manifest {
        ManifestKind::Slo => crate::zeros::BLOCK,
        ManifestKind::Dlo => job.limits.slo.as_ref().map(|_| crate::zeros::DLO_MIN_RUN)?,
    };
    let nests = job.plan.manifest == ManifestKind::Dlo || store.nested_slo;
    if store.makes_zeros() && nests {
        return Some(ZeroRule { min_run, unit: None });
    }
    let unit = zero_unit(&job.plan).max(min_run);
    Some(ZeroRule { min_run: unit, unit: Some(unit) })
}

/// The most segments a job may have before the link's splits stop, on a store that
/// cannot nest manifests (every segment must fit in one manifest, with room left
/// for the pieces zero runs may still cut); `None`: no limit.
pub(crate) fn split_cap(job: &JobRecord, store: &crate::swift::StoreTraits) -> Option<u64> {
    if job.plan.manifest != ManifestKind::Slo || store.nested_slo {
        return None;
    }
    let zeros = zero_rule(job, store).and_then(|r| r.unit).map_or(0, |u| job.plan.file_size.div_ceil(u) * 3);
    Some(job.plan.per_manifest.saturating_sub(zeros).max(job.plan.segment_count))
}

/// The one length of a job's zero pieces where it needs one (before
/// [`zero_rule`] raises it to the shortest run skipped): a whole number of MiB (a
/// power of two), at most a segment, and for an SLO large enough that a file of
/// zero runs still fits in one manifest beside the plan's data segments (each run adds at
/// most one zero piece per unit and two data pieces: the data it splits, and the
/// rest of the run under a unit).
pub(crate) fn zero_unit(plan: &crate::plan::Plan) -> u64 {
    let block = crate::zeros::BLOCK;
    if plan.manifest == ManifestKind::Dlo {
        // No manifest to fit: the unit is the shortest run a DLO skips.
        return block;
    }
    let room = plan.per_manifest.saturating_sub(plan.segment_count).max(1);
    let mut unit = block;
    while unit < plan.segment_size && plan.file_size.div_ceil(unit).saturating_mul(3) > room {
        unit *= 2;
    }
    unit.min(plan.segment_size.max(block) / block * block).max(block)
}

/// Which server a first contact was with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contact {
    /// The login (Swift v1 auth, Keystone).
    Login,
    /// The object store (`/info`).
    Storage,
}

/// A failed first contact of a new job: what failed, on which URL, and the setting
/// to check. A server that cannot be reached (a host that does not resolve, a
/// refused connection or TLS handshake) or that is not the service expected is bad
/// input (exit 2), said at once; failures retried until `--retry-for` ran out exit
/// 75. Either way nothing was created yet.
fn first_contact(swift: &Swift, e: SwiftError, contact: Contact) -> Error {
    let creds = swift.auth().credentials();
    let (server, setting) = match contact {
        Contact::Login => ("the auth server", creds.auth_setting().unwrap_or("the credentials")),
        Contact::Storage => ("the object store", creds.storage_setting()),
    };
    let (origin, class) = (e.origin, e.class);
    let mut err = e.into_error(ErrorKind::Resumable);
    let check = match origin {
        Origin::UnknownHost => Some(format!("check the host name in {setting} (and the DNS)")),
        Origin::Refused => Some(format!("check the host and port in {setting}, and that the server runs")),
        Origin::TlsRefused | Origin::PlainHttp => Some(format!(
            "check {setting}: https:// needs the server's TLS port; a port that speaks plain HTTP takes http://"
        )),
        Origin::Endpoint if contact == Contact::Storage => Some(format!(
            "check {setting}: it must be a Swift account URL, such as https://swift.example.com/v1/AUTH_<project id>"
        )),
        _ => None,
    };
    if origin.is_link() {
        err.msg = format!("cannot reach {server}: {}", err.msg);
    }
    if origin.is_link() && class == Class::Transient && !origin.is_unreachable() {
        // Retried for --retry-for (and said on stderr meanwhile): perhaps an outage.
        err.kind = ErrorKind::Resumable;
        err.hint = Some(format!(
            "nothing was created yet: run the same command again once {server} answers (check {setting} and the network)"
        ));
        return err;
    }
    if origin.is_unreachable() {
        err.kind = ErrorKind::BadInput;
    }
    if let Some(c) = check {
        err.hint = Some(format!("{c}; nothing was created"));
    }
    err
}

impl Engine {
    /// The tunables of the run under way.
    pub(crate) fn settings(&self) -> Settings {
        *self.active.lock().expect("settings lock")
    }

    /// The storage URL: the login, when the credentials need one. For a new job it is
    /// the first contact (a server that cannot be reached is a wrong URL, said at
    /// once); for a job that exists, a server that does not answer may be an outage,
    /// retried for `--retry-for` like any other.
    async fn storage_url_first(&self, job_exists: bool) -> Result<String> {
        if job_exists {
            return self.swift.storage_url().await.map_err(|e| e.into_error(ErrorKind::Resumable));
        }
        self.swift.first_contact().storage_url().await.map_err(|e| first_contact(&self.swift, e, Contact::Login))
    }

    /// Opens a job's journal for a run. A damaged journal is never trusted: it is
    /// set aside and the job rebuilt from its birth record; the next reconciliation
    /// then adopts every segment the server holds whole (hashing the file).
    pub(crate) fn open_job(&self, id: &str) -> Result<Journal> {
        match self.root.open_checked(id)? {
            Opened::Ok(j) => Ok(j),
            Opened::Damaged { reason, birth, held } => {
                let Some(mut job) = birth.map(|b| *b) else {
                    return Err(Error::failed(format!("{reason}, and so is its birth record: it cannot be rebuilt"))
                        .hint(format!("move jobs/{id} out of the journal directory and run the same `k5up upload` command again: segments already on the server are adopted, not sent again")));
                };
                tracing::warn!(
                    "{reason}: rebuilding it from its birth record, the server's listing and the file (the damaged copy is kept beside it as db.damaged-TIME)"
                );
                job.phase = Phase::Uploading;
                job.last_error = Some(format!("journal rebuilt after damage ({reason})"));
                let source = File::open(job.file_path()).ok();
                let store = self.root.job_store(id)?;
                let segs = new_job::first_cuts(&job, &store, source.as_ref(), &[]);
                self.root.rebuild(held, &job, segs)
            }
        }
    }

    /// `k5up resume JOB`.
    pub(crate) async fn resume(&self, id: &str) -> Result<StatusView> {
        let journal = self.open_job(id)?;
        let job = journal.job()?;
        // Only the sharing left: it needs Glance, not the file (which may be gone).
        if job.manifest_etag.is_some() && !run::import_pending(&journal, &job)? && sharing::share_pending(&journal)? {
            return self.share_on(journal, &ShareRequest::default()).await;
        }
        let (_, file, opened) = source::open(&job.file_path()).map_err(|e| e.context(format!("job {}", job.id)))?;
        self.or_cancel(self.storage_url_first(true)).await?;
        self.run(journal, file, &opened).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    #[test]
    fn the_zero_unit_fits_one_manifest_for_an_slo_and_is_the_smallest_for_a_dlo() {
        const MIB: u64 = 1 << 20;
        let slo = Plan {
            file_size: 1 << 30,
            segment_size: 256 * MIB,
            segment_count: 21,
            manifest: ManifestKind::Slo,
            per_manifest: 1000,
        };
        // 3 × 1024 MiB / unit must fit in the 979 entries left: 4 MiB.
        assert_eq!(zero_unit(&slo), 4 * MIB);
        let huge = Plan { file_size: 4 << 40, segment_size: 5 << 30, segment_count: 820, ..slo.clone() };
        assert_eq!(zero_unit(&huge), 5 << 30, "at most a segment");
        let dlo = Plan { manifest: ManifestKind::Dlo, per_manifest: 0, ..slo };
        assert_eq!(zero_unit(&dlo), MIB, "a DLO has no manifest to fit (zero_rule raises it to the shortest run)");
    }
}
