//! `verify`: the server against the journal (the object, its manifest, every
//! segment), the report with what repairs each failed check, and the helpers the
//! deep read-back shares.

use serde::Serialize;

use super::{Engine, finish, naming_of};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Phase, SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::swift::dlo_manifest_value;

/// One check of `verify`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// When it does not hold: the command that repairs it.
    pub repair: Option<Repair>,
}

/// The way out of a failed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Repair {
    /// The command to run (`k5up resume JOB`, `k5up upload FILE ... --replace`).
    pub command: String,
    /// What it does about the failure.
    pub does: String,
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.command, self.does)
    }
}

impl Check {
    pub(super) fn new(name: &str, ok: bool, detail: String, repair: impl FnOnce() -> Repair) -> Self {
        Check { name: name.into(), ok, detail, repair: (!ok).then(repair) }
    }
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerifyReport {
    /// Job id.
    pub job: String,
    /// True when every check holds.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// The repairs of the checks that fail, one per command (the first check's
    /// words), in the order of the checks.
    pub(crate) fn repairs(&self) -> Vec<Repair> {
        let mut out: Vec<Repair> = vec![];
        for r in self.checks.iter().filter_map(|c| c.repair.clone()) {
            if !out.iter().any(|o| o.command == r.command) {
                out.push(r);
            }
        }
        out
    }
}

/// `k5up resume JOB`, for an object whose segments or manifest are not the
/// journal's: a run on a finished job checks the server and rebuilds what differs.
pub(super) fn resume_fix(id: &str, what: &str) -> Repair {
    Repair {
        command: format!("k5up resume {id}"),
        does: format!("{what} (it reads the file, which must be the one uploaded)"),
    }
}

/// At most this many segments are named in one check's detail.
pub(super) const NAMED: usize = 5;

impl Engine {
    /// `k5up verify JOB [--deep]`.
    pub(crate) async fn verify(&self, id: &str, deep: bool) -> Result<VerifyReport> {
        // Read only: verify never takes the writer lock or rebuilds a journal.
        let Some(journal) = self.root.open_reader(id)? else {
            return Err(self.root.busy(id));
        };
        let (job, segs) = (journal.job()?, journal.segments()?);
        drop(journal);
        let naming = naming_of(&job);
        let mut checks = vec![];
        let se = |e: crate::swift::SwiftError| {
            let e = e.into_error(ErrorKind::Resumable).context(format!("verify of job {id}"));
            match e.kind {
                ErrorKind::Resumable => {
                    e.hint(format!("check the endpoint and the network, then `k5up verify {id}` again"))
                }
                _ => e,
            }
        };

        // Segments: every journaled segment on the server with its MD5 and size.
        let listing = self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?;
        let slo = job.plan.manifest == ManifestKind::Slo;
        let listed: std::collections::HashMap<&str, &crate::swift::ListEntry> =
            listing.iter().map(|e| (e.name.as_str(), e)).collect();
        let mut bad: Vec<String> = super::reconcile::missing_on_server(&segs, &listing, &naming, slo)
            .into_iter()
            .map(|s| {
                let want = s.md5.as_deref().unwrap_or("(not journaled)");
                match listed.get(naming.name(s).as_str()) {
                    None => format!("{} missing", naming.label(s)),
                    Some(e) if e.bytes != s.length => {
                        format!(
                            "{} holds {} bytes with MD5 {}, expected {} with MD5 {want}",
                            naming.label(s),
                            e.bytes,
                            e.hash,
                            s.length
                        )
                    }
                    Some(e) => format!("{} holds MD5 {}, expected {want}", naming.label(s), e.hash),
                }
            })
            .collect();
        // An SLO's zero segments are ranges of the job's zero object: it must be whole.
        if let Some(z) = segs.iter().find(|s| slo && s.is_zero() && s.state == SegState::Confirmed) {
            let (name, want, len) = holder(slo, &naming, &segs, z);
            let want = want.unwrap_or_default();
            match self.swift.head(&naming.container, &name).await.map_err(se)? {
                None => bad.push(format!("zero object {name} missing")),
                Some(h) if h.size == len && h.etag.eq_ignore_ascii_case(&want) => {}
                Some(h) => bad.push(format!(
                    "zero object {name} holds {} bytes with MD5 {}, expected {len} zeros with MD5 {want}",
                    h.size, h.etag
                )),
            }
        }
        // An SLO's zero and repeated segments are ranges of its zero object or entries
        // of their original: no object of their own.
        let objectless = |s: &crate::journal::SegmentRecord| s.is_made() && slo;
        let confirmed = segs.iter().filter(|s| s.state == SegState::Confirmed && !objectless(s)).count();
        let zeros = segs.iter().filter(|s| objectless(s)).count();
        let zero_note = if zeros > 0 {
            format!(" ({zeros} more are zeros or repeats: ranges of the zero object, or their original)")
        } else {
            String::new()
        };
        checks.push(Check::new(
            "segments",
            bad.is_empty(),
            if bad.is_empty() {
                format!(
                    "{confirmed} confirmed segment(s) of {} on the server with their MD5 and size{zero_note}",
                    segs.len() - zeros
                )
            } else {
                format!(
                    "{} confirmed segment object(s) missing or different in {} (listed under {}): {}",
                    bad.len(),
                    naming.container,
                    naming.prefix,
                    bad[..bad.len().min(20)].join("; ")
                )
            },
            || resume_fix(id, "sends the missing or different segments again and writes the manifest again"),
        ));

        // The object and its manifest.
        let head = self.swift.head(&job.container, &job.object).await.map_err(se)?;
        let want = finish::expected_etag(&job, &segs, &naming);
        let rebuild = || resume_fix(id, "writes the object again from its segments (sending any the server lacks)");
        match &head {
            None => checks.push(Check::new(
                "object",
                false,
                format!("{}/{} does not exist (phase {})", job.container, job.object, job.phase.as_str()),
                rebuild,
            )),
            Some(h) => {
                checks.push(Check::new(
                    "object",
                    h.size == job.plan.file_size && h.etag.eq_ignore_ascii_case(&want),
                    format!("size {} (expected {}), ETag {} (expected {want})", h.size, job.plan.file_size, h.etag),
                    rebuild,
                ));
                if !segs.is_empty() {
                    let readable = self.root.job_store(id)?.manifest_readable;
                    let mut c = self.check_manifest(&job, &naming, h, &segs, readable).await?;
                    if !c.ok {
                        c.repair = Some(rebuild());
                    }
                    checks.push(c);
                }
            }
        }

        if deep {
            checks.push(match &head {
                Some(_) => self.read_back(&job, &segs, &naming).await?,
                None => Check::new(
                    "content",
                    false,
                    format!("not read back: {}/{} does not exist", job.container, job.object),
                    rebuild,
                ),
            });
        }
        let ok = checks.iter().all(|c| c.ok);
        if !ok && job.phase != Phase::Done {
            checks.push(Check::new(
                "phase",
                false,
                format!("the job is not complete (phase {})", job.phase.as_str()),
                || Repair { command: format!("k5up resume {id}"), does: "finishes it".into() },
            ));
        }
        Ok(VerifyReport { job: job.id, ok, checks })
    }

    async fn check_manifest(
        &self,
        job: &crate::journal::JobRecord,
        naming: &crate::names::SegmentNaming,
        head: &crate::swift::ObjectInfo,
        segs: &[crate::journal::SegmentRecord],
        readable: bool,
    ) -> Result<Check> {
        Ok(match job.plan.manifest {
            ManifestKind::Dlo => {
                let want = dlo_manifest_value(&naming.container, &naming.prefix);
                let got = head.dlo_manifest.clone().unwrap_or_default();
                let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_string();
                Check {
                    name: "manifest".into(),
                    ok: decoded(&got) == decoded(&want),
                    detail: format!("X-Object-Manifest {got:?} (expected {want:?})"),
                    repair: None,
                }
            }
            ManifestKind::Slo if !head.slo => Check {
                name: "manifest".into(),
                ok: false,
                detail: format!("{}/{} is not an SLO (no X-Static-Large-Object)", job.container, job.object),
                repair: None,
            },
            ManifestKind::Slo if !readable => {
                let want = super::finish::expected_etag(job, segs, naming);
                Check {
                    name: "manifest".into(),
                    ok: head.size == job.plan.file_size && head.etag.eq_ignore_ascii_case(&want),
                    detail: format!(
                        "SLO of {} bytes with ETag {} (expected {want}: the MD5 of the ETags of the {} segments the journal lists; this store cannot give a manifest back)",
                        head.size,
                        head.etag,
                        segs.len()
                    ),
                    repair: None,
                }
            }
            ManifestKind::Slo => {
                let resp = self
                    .swift
                    .get(&job.container, &job.object, "multipart-manifest=get")
                    .await
                    .map_err(|e| e.into_error(ErrorKind::Resumable))?;
                // A body cut short is a failure of the link, not a bad manifest.
                let body = resp.bytes().await.map_err(|e| {
                    Error::resumable(format!(
                        "job {}: reading the manifest of {}/{}: {}",
                        job.id,
                        job.container,
                        job.object,
                        crate::swift::SwiftError::transport("GET", &e).detail
                    ))
                    .hint(format!("`k5up verify {}` again once the link is steady", job.id))
                })?;
                let entries = match crate::swift::manifest::parse_stored(&body) {
                    Ok(entries) => entries,
                    Err(e) => {
                        return Ok(Check {
                            name: "manifest".into(),
                            ok: false,
                            detail: format!("the manifest of {}/{} does not parse: {e}", job.container, job.object),
                            repair: None,
                        });
                    }
                };
                // An entry with a range holds that range of its segment.
                let total: u64 = entries.iter().map(|e| e.content_len()).sum();
                let levels = job.plan.levels_for(segs.len() as u64);
                let expect_top = if levels == 1 { segs.len() } else { 0 };
                let ok = head.slo && total == job.plan.file_size && (expect_top == 0 || entries.len() == expect_top);
                Check {
                    name: "manifest".into(),
                    ok,
                    detail: format!(
                        "SLO with {} top-level entr{} totalling {total} bytes ({} level{})",
                        entries.len(),
                        if entries.len() == 1 { "y" } else { "ies" },
                        levels,
                        if levels == 1 { "" } else { "s" }
                    ),
                    repair: None,
                }
            }
        })
    }
}

/// The MD5 a segment's bytes must have: journaled, or that of its zeros.
pub(super) fn expected_md5(s: &SegmentRecord) -> Option<String> {
    match &s.md5 {
        Some(m) => Some(m.clone()),
        None if s.is_zero() => Some(crate::runtime::blocking(|| crate::zeros::md5_of_zeros(s.length))),
        None => None,
    }
}

/// The object that holds `s`'s bytes on the server (in the segment container), with
/// the MD5 and size it must have: the segment's own (a DLO's zeros and repeats are
/// objects of their own too), or for an SLO's zeros the job's zero object, for its
/// repeats their original.
pub(super) fn holder(
    slo: bool,
    naming: &SegmentNaming,
    segs: &[SegmentRecord],
    s: &SegmentRecord,
) -> (String, Option<String>, u64) {
    if !slo || !s.is_made() {
        return (naming.name(s), expected_md5(s), s.length);
    }
    if s.is_zero() {
        let z = segs.iter().filter(|s| s.is_zero()).map(|s| s.length).max().unwrap_or(s.length);
        return (
            naming.zero_name(&format!("object+{z}")),
            Some(crate::runtime::blocking(|| crate::zeros::md5_of_zeros(z))),
            z,
        );
    }
    let name = s.repeat_of().map_or_else(|| naming.name(s), |of| naming.name_at(of, s.length));
    (name, expected_md5(s), s.length)
}

/// ` (X-Trans-Id: …)` when the server gave one.
pub(super) fn trans_note(t: Option<&str>) -> String {
    t.map(|t| format!(", X-Trans-Id: {t}")).unwrap_or_default()
}
