//! The image import, after the object is complete and verified: Fujitsu K5's
//! vmimport ([`k5`]) or OpenStack Glance ([`glance`]).
//!
//! Both are resumable. The image id is derived from the job and the attempt number
//! before anything is sent, so a run killed after the request but before the
//! journal recorded it finds its own import again (Glance: `GET /v2/images/<id>`;
//! K5: the import list, by image id) instead of starting a second one.

pub(crate) mod direct;
pub(crate) mod format;
pub(crate) mod glance;
pub(crate) mod k5;
pub(crate) mod projects;
pub(crate) mod share;
pub(crate) mod tempurl;

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::digest::{Algo, DigestState};
use crate::error::{Error, Result};
pub(crate) use crate::model::{ImportKind, ImportSpec};
use crate::model::{ImportOutcome, ImportState, JobRecord};
use crate::swift::Swift;

/// The image's size in bytes, sent (as openstacksdk does) with the Glance calls that
/// give it data or start an import: Glance 31 and later check it, and the quota,
/// before taking any data; older ones ignore it.
pub(crate) const IMAGE_SIZE: &str = "X-OpenStack-Image-Size";

/// What to do after a failed Glance import.
pub(crate) fn retry_hint(job: &str) -> String {
    format!("fix the cause, then `k5up import {job}` tries again (the object stays in Swift)")
}

/// Fills what the user left out (the disk format, detected from the file; the image
/// name, from the object name) and validates the result.
pub(crate) fn complete(mut spec: ImportSpec, file: &std::fs::File, size: u64, object: &str) -> Result<ImportSpec> {
    if spec.disk_format.is_empty() {
        spec.disk_format = format::detect(file, size).to_string();
    }
    if spec.image_name.is_empty() {
        let base = object.rsplit('/').next().unwrap_or(object);
        let stem = base.rsplit_once('.').map(|(s, _)| s).filter(|s| !s.is_empty()).unwrap_or(base);
        spec.image_name = stem.to_string();
    }
    validate(&spec, object)?;
    Ok(spec)
}

/// Checks that the import service can be reached with these credentials, before
/// anything is uploaded: one authenticated listing call (Glance `GET /v2/images`,
/// vmimport `GET /v1/imageimport`). Swift-only credentials with `--import glance`
/// were found out only after the whole upload.
pub(crate) async fn preflight(swift: &Swift, spec: &ImportSpec) -> Result<()> {
    let quick = swift.with_retry_for(Duration::from_secs(10));
    let (name, url) = match spec.kind {
        ImportKind::Glance => ("Glance", format!("{}/v2/images?limit=1", glance::endpoint_of(&quick, spec).await?)),
        ImportKind::K5 => {
            let base = spec.endpoint.clone().ok_or_else(|| {
                Error::input("no vmimport endpoint").hint("use --k5-region REGION, or --vmimport-url URL")
            })?;
            ("vmimport", format!("{}/v1/imageimport?start=0&limit=1", base.trim_end_matches('/')))
        }
    };
    let op = format!("GET {url} (can {name} be reached with these credentials?)");
    match quick.session().send_url_retrying(&op, reqwest::Method::GET, &url, |r| r.header("Accept", "application/json")).await {
        Ok(_) => Ok(()),
        Err(e) if e.status == Some(401) || e.status == Some(403) => {
            Err(Error::input(format!("{name} refused these credentials: {e}")).hint(match spec.kind {
                ImportKind::Glance => "Glance needs Keystone credentials (an OpenStack RC file, OS_CLOUD or OS_AUTH_URL...) whose project may create images",
                ImportKind::K5 => "use the K5 contract user's credentials (--k5-region/--k5-contract with OS_USERNAME/OS_PASSWORD)",
            }))
        }
        Err(e) => Err(Error::input(format!("cannot use {name} at {url}: {e}"))
            .hint(format!("check the {name} endpoint ({})", match spec.kind {
                ImportKind::Glance => "--glance-url, or the `image` service of the catalog",
                ImportKind::K5 => "--vmimport-url or --k5-region",
            }))),
    }
}

/// Checks an import against the object before anything is uploaded: a user must
/// not learn after a 300 GB upload that the name or OS type is refused.
pub(crate) fn validate(spec: &ImportSpec, object: &str) -> Result<()> {
    if spec.image_name.trim().is_empty() {
        return Err(Error::input("the image name is empty").hint("set --image-name"));
    }
    match spec.kind {
        ImportKind::K5 => k5::validate(spec, object),
        ImportKind::Glance => {
            if !format::KNOWN.contains(&spec.disk_format.as_str())
                && !glance::OTHER_FORMATS.contains(&spec.disk_format.as_str())
            {
                return Err(Error::input(format!("unknown disk format `{}`", spec.disk_format)).hint(format!(
                    "--disk-format takes one of {}, {}",
                    format::KNOWN.join(", "),
                    glance::OTHER_FORMATS.join(", ")
                )));
            }
            Ok(())
        }
    }
}

/// `n` random bytes from the kernel.
pub(crate) fn random_bytes<const N: usize>() -> std::result::Result<[u8; N], getrandom::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)?;
    Ok(b)
}

/// The image id of `attempt` of `job`'s import: a UUID (version 4 layout) derived
/// from the job, so every run of the same attempt asks for the same id.
pub(crate) fn image_id(job: &JobRecord, kind: ImportKind, attempt: u32) -> String {
    let mut h = Sha256::new();
    for part in [job.id.as_str(), job.storage_url.as_str(), job.container.as_str(), job.object.as_str(), kind.as_str()]
    {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(attempt.to_be_bytes());
    h.update(job.created_unix.to_be_bytes());
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// What an import run needs.
pub(crate) struct Ctx<'a> {
    /// The account (and its token, shared with the image service).
    pub swift: &'a Swift,
    /// The job.
    pub job: &'a JobRecord,
    /// What to import.
    pub spec: &'a ImportSpec,
    /// The whole-image digests (complete).
    pub digests: &'a DigestState,
    /// The state journaled by an earlier run, if any: the import continues it.
    pub saved: Option<ImportState>,
    /// Called with every new state: makes it durable (the caller journals it) and
    /// reports it (status snapshot, progress display). The import knows no journal.
    pub on_state: &'a (dyn Fn(&ImportState) -> Result<()> + Sync),
    /// First poll interval (grows to [`MAX_POLL`]).
    pub poll: Duration,
    /// The source file, when it is still the one uploaded (what Glance's
    /// glance-direct fallback stages); else why it cannot be used.
    pub source: std::result::Result<std::sync::Arc<std::fs::File>, String>,
}

/// Longest interval between two status polls.
pub(crate) const MAX_POLL: Duration = Duration::from_secs(15);

impl Ctx<'_> {
    /// Hands `s` to the caller, which makes it durable before the import goes on.
    pub(crate) fn save(&self, s: &ImportState) -> Result<()> {
        (self.on_state)(s)
    }

    /// A whole-image digest the import needs.
    pub(crate) fn digest(&self, a: Algo) -> Result<&str> {
        self.digests.value(a).ok_or_else(|| {
            Error::failed(format!("job {}: the {a} digest of the image is unknown", self.job.id))
                .hint(format!("run `k5up resume {}`: it re-reads what is needed", self.job.id))
        })
    }

    /// The object's path for vmimport and TempURLs: `/v1/AUTH_x/container/object`.
    pub(crate) fn object_path(&self) -> Result<String> {
        Ok(format!("{}/{}/{}", self.account_path()?, self.job.container, self.job.object))
    }

    /// The account's path in the storage URL (`/v1/AUTH_x`), not percent-encoded.
    pub(crate) fn account_path(&self) -> Result<String> {
        crate::swift::url::account_path(&self.job.storage_url)
            .ok_or_else(|| Error::failed(format!("cannot read the account path of {}", self.job.storage_url)))
    }
}

/// The state to continue from: the journaled one, or attempt 1. A failed K5 import
/// is retried as a new attempt (a new image id); a Glance image that failed to
/// import keeps its id and is imported again.
pub(crate) fn next_state(job: &JobRecord, kind: ImportKind, saved: Option<ImportState>) -> ImportState {
    match saved {
        Some(s) if s.kind == kind && s.outcome != ImportOutcome::Failed => s,
        Some(s) if s.kind == kind && kind == ImportKind::Glance => {
            ImportState { outcome: ImportOutcome::Running, message: None, ..s }
        }
        prev => {
            let attempt = prev.filter(|p| p.kind == kind).map(|p| p.attempt + 1).unwrap_or(1);
            ImportState {
                kind,
                attempt,
                image_id: image_id(job, kind, attempt),
                import_id: None,
                status: "new".into(),
                progress: None,
                outcome: ImportOutcome::Running,
                message: None,
            }
        }
    }
}

/// Runs (or continues) the import. Returns the final state; a failed import is an
/// error naming the service's message.
pub(crate) async fn run(ctx: &Ctx<'_>) -> Result<ImportState> {
    let mut state = next_state(ctx.job, ctx.spec.kind, ctx.saved.clone());
    if state.outcome == ImportOutcome::Succeeded {
        return Ok(state);
    }
    ctx.save(&state)?;
    let r = match ctx.spec.kind {
        ImportKind::K5 => k5::run(ctx, &mut state).await,
        ImportKind::Glance => glance::run(ctx, &mut state).await,
    };
    match r {
        Ok(()) => {
            state.outcome = ImportOutcome::Succeeded;
            ctx.save(&state)?;
            Ok(state)
        }
        Err(Failure::Service(msg, hint)) => {
            state.outcome = ImportOutcome::Failed;
            state.message = Some(msg.clone());
            ctx.save(&state)?;
            Err(Error::failed(format!(
                "job {}: the {} import of image {} failed: {msg}",
                ctx.job.id,
                ctx.spec.kind.as_str(),
                state.image_id
            ))
            .hint(hint))
        }
        Err(Failure::Run(e)) => Err(e),
    }
}

/// How an import run ends without success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The service refused or failed the import (terminal for this attempt): message, hint.
    Service(String, String),
    /// The run stopped (network, journal, interrupted): resume continues the same import.
    Run(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Run(e)
    }
}

/// Polling intervals: `first`, growing by half up to [`MAX_POLL`].
pub(crate) fn next_poll(cur: Duration) -> Duration {
    (cur + cur / 2).min(MAX_POLL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobRecord {
        crate::model::tests_support::sample_job("abcd1234")
    }

    #[test]
    fn image_ids_are_stable_uuids_per_attempt() {
        let j = job();
        let a = image_id(&j, ImportKind::Glance, 1);
        assert_eq!(a, image_id(&j, ImportKind::Glance, 1));
        assert_ne!(a, image_id(&j, ImportKind::Glance, 2));
        assert_ne!(a, image_id(&j, ImportKind::K5, 1));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn failed_attempts() {
        let j = job();
        let first = next_state(&j, ImportKind::K5, None);
        assert_eq!(first.attempt, 1);
        let failed = ImportState { outcome: ImportOutcome::Failed, ..first.clone() };
        let again = next_state(&j, ImportKind::K5, Some(failed.clone()));
        assert_eq!(again.attempt, 2);
        assert_ne!(again.image_id, first.image_id);
        let running = next_state(&j, ImportKind::K5, Some(first.clone()));
        assert_eq!(running, first, "a running import is continued, not restarted");
        let g = next_state(&j, ImportKind::Glance, None);
        let gf = ImportState { outcome: ImportOutcome::Failed, ..g.clone() };
        let g2 = next_state(&j, ImportKind::Glance, Some(gf));
        assert_eq!((g2.attempt, &g2.image_id, g2.outcome), (1, &g.image_id, ImportOutcome::Running));
    }
}
