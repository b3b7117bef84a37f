//! `verify` (compare the server with the journal, and optionally read the object
//! back) and `abort` (delete a job's segments and its journal).

use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::Serialize;

use super::{Engine, Settings, finish, naming_of};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Phase, SegState, SegmentRecord};
use crate::names::SegmentNaming;
use crate::plan::ManifestKind;
use crate::swift::dlo_manifest_value;

/// One check of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
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
pub struct Repair {
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
    fn new(name: &str, ok: bool, detail: String, repair: impl FnOnce() -> Repair) -> Self {
        Check { name: name.into(), ok, detail, repair: (!ok).then(repair) }
    }
}

/// The outcome of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
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
    pub fn repairs(&self) -> Vec<Repair> {
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
fn resume_fix(id: &str, what: &str) -> Repair {
    Repair {
        command: format!("k5up resume {id}"),
        does: format!("{what} (it reads the file, which must be the one uploaded)"),
    }
}

/// At most this many segments are named in one check's detail.
const NAMED: usize = 5;

impl Engine {
    /// `k5up verify JOB [--deep]`.
    pub async fn verify(&self, id: &str, deep: bool) -> Result<VerifyReport> {
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
                    let mut c = self.check_manifest(&job, &naming, h, &segs).await?;
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
            ManifestKind::Slo => {
                let resp = self
                    .swift
                    .get(&job.container, &job.object, "multipart-manifest=get&format=raw")
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
                let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
                // An entry with a range holds that range of its segment.
                let held = |e: &serde_json::Value| {
                    let range = e["range"].as_str().and_then(|r| r.split_once('-'));
                    match range.and_then(|(a, b)| b.parse::<u64>().ok()?.checked_add(1)?.checked_sub(a.parse().ok()?)) {
                        Some(n) => Some(n),
                        None => e["size_bytes"].as_u64(),
                    }
                };
                let total: u64 = entries.iter().filter_map(held).sum();
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

    /// Reads the object back and compares it with the journal segment by segment
    /// (each segment's bytes against its journaled MD5) and with the local file as a
    /// whole. A segment the server holds with other bytes is named with both MD5s:
    /// Swift stops reading an SLO at a segment whose ETag is not its manifest
    /// entry's (409 when it is the first one asked for), so the read goes on from the
    /// next segment (a `Range` GET) and every such segment is found in one pass. A
    /// read that breaks at a segment the server holds whole is a fault of the link:
    /// read on from that byte, and after three breaks there an interruption (75).
    async fn read_back(
        &self,
        job: &crate::journal::JobRecord,
        segs: &[SegmentRecord],
        naming: &SegmentNaming,
    ) -> Result<Check> {
        let path = job.file_path();
        let local = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            let f = std::fs::File::open(&path)?;
            let len = crate::source::size_of(&f)?;
            Ok((crate::source::md5_range(&f, 0, len)?, len))
        });
        let target = format!("{}/{}", job.container, job.object);
        let size = job.plan.file_size;
        let mut order: Vec<&SegmentRecord> = segs.iter().collect();
        order.sort_by_key(|s| s.offset);
        // The whole object's MD5, while no segment was skipped.
        let mut whole = Some(Md5::new());
        let mut seg = Md5::new();
        // The next byte to read, and the segment that holds it.
        let (mut pos, mut k) = (0u64, 0usize);
        let mut differs: Vec<String> = vec![];
        let mut unchecked = 0usize;
        let mut extra = 0u64;
        let mut breaks: (u64, u32) = (u64::MAX, 0);
        let slo = job.plan.manifest == ManifestKind::Slo;
        let reading = |e: String| format!("job {}: reading {target} back: {e}", job.id);
        loop {
            let resp = match self.swift.get_from(&job.container, &job.object, pos).await {
                Ok(r) => r,
                Err(e) if e.status == Some(409) && k < order.len() => {
                    // Swift checked the first segment of the read and refused it.
                    let s = order[k];
                    let why = format!("the server refused to read it (HTTP 409{})", trans_note(e.trans_id.as_deref()));
                    match self.segment_differs(job, naming, segs, s, &why).await? {
                        Some(d) => {
                            differs.push(d);
                            whole = None;
                            (pos, k, seg) = (s.offset + s.length, k + 1, Md5::new());
                            continue;
                        }
                        None => {
                            return Err(e
                                .into_error(ErrorKind::Failed)
                                .context(reading(format!(
                                    "{} is whole on the server, yet the manifest's entry for it does not match it",
                                    naming.label(s)
                                )))
                                .hint(resume_fix(&job.id, "writes the manifest again").to_string()));
                        }
                    }
                }
                Err(e) => {
                    return Err(e
                        .into_error(ErrorKind::Resumable)
                        .context(format!("job {}: reading {target} back", job.id)));
                }
            };
            let trans = crate::swift::error::trans_id(resp.headers());
            if pos > 0 && resp.status().as_u16() != 206 {
                return Err(Error::failed(reading(format!(
                    "asked for the bytes from {pos} on, the server answered HTTP {} (not 206){}",
                    resp.status().as_u16(),
                    trans_note(trans.as_deref())
                )))
                .hint(format!(
                    "verify without --deep compares the server's segments with the journal: `k5up verify {}`",
                    job.id
                )));
            }
            let mut stream = resp.bytes_stream();
            let mut cut: Option<reqwest::Error> = None;
            while let Some(chunk) = stream.next().await {
                let c = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        cut = Some(e);
                        break;
                    }
                };
                if let Some(w) = whole.as_mut() {
                    w.update(&c);
                }
                let mut rest = &c[..];
                while !rest.is_empty() {
                    let Some(s) = order.get(k) else {
                        extra += rest.len() as u64;
                        pos += rest.len() as u64;
                        break;
                    };
                    let end = s.offset + s.length;
                    let take = rest.len().min(end.saturating_sub(pos) as usize);
                    seg.update(&rest[..take]);
                    (pos, rest) = (pos + take as u64, &rest[take..]);
                    if pos >= end {
                        let got = hex::encode(std::mem::take(&mut seg).finalize());
                        match expected_md5(s) {
                            Some(want) if !want.eq_ignore_ascii_case(&got) => differs.push(format!(
                                "{} (bytes {}-{}): {}/{} read back with MD5 {got}, expected MD5 {want} ({} bytes, the file's as journaled)",
                                naming.label(s),
                                s.offset,
                                end.saturating_sub(1),
                                naming.container,
                                holder(slo, naming, segs, s).0,
                                s.length
                            )),
                            Some(_) => {}
                            None => unchecked += 1,
                        }
                        k += 1;
                    }
                }
            }
            if cut.is_none() && pos >= size {
                break;
            }
            // The body ended before the object did: at which segment, and why?
            let why = match &cut {
                Some(e) => format!(
                    "the server stopped sending at byte {pos} ({}{})",
                    crate::swift::SwiftError::transport("GET", e).detail,
                    trans_note(trans.as_deref())
                ),
                None => format!("the body ended at byte {pos}{}", trans_note(trans.as_deref())),
            };
            let Some(s) = order.get(k).copied() else {
                return Err(Error::failed(reading(why)));
            };
            if let Some(d) = self.segment_differs(job, naming, segs, s, &why).await? {
                differs.push(d);
                whole = None;
                (pos, k, seg) = (s.offset + s.length, k + 1, Md5::new());
                continue;
            }
            // The server holds that segment whole: the link broke. Read on from there.
            breaks = if breaks.0 == pos { (pos, breaks.1 + 1) } else { (pos, 1) };
            if breaks.1 >= 3 {
                return Err(Error::resumable(reading(format!(
                    "{why}, three times, in {} (which the server holds whole)",
                    naming.label(s)
                )))
                .hint(format!("check the network, then `k5up verify {} --deep` again", job.id)));
            }
            tracing::warn!("job {}: reading {target} back: {why}; reading on from there", job.id);
        }
        let (local, _) = local.await.map_err(|e| Error::failed(e.to_string()))?.map_err(|e| {
            Error::io(format!("job {}: cannot read {}", job.id, job.file), e).hint(format!(
                "`k5up verify {}` (without --deep) compares the server with the journal without the file",
                job.id
            ))
        })?;
        let remote = whole.map(|w| hex::encode(w.finalize()));
        let resume = || resume_fix(&job.id, "sends these segments again and writes the manifest again");
        if !differs.is_empty() {
            let n = differs.len();
            let more = if n > NAMED { format!("; and {} more", n - NAMED) } else { String::new() };
            let rest = order.len().saturating_sub(n);
            return Ok(Check::new(
                "content",
                false,
                format!(
                    "{n} segment(s) of {target} do not hold the file's bytes: {}{more}; the other {rest} read back with their journaled MD5s",
                    differs[..n.min(NAMED)].join("; ")
                ),
                resume,
            ));
        }
        if extra > 0 || pos != size {
            return Ok(Check::new(
                "content",
                false,
                format!("read back {pos} bytes of {target}; the file has {size}"),
                resume,
            ));
        }
        let remote = remote.unwrap_or_default();
        let ok = remote.eq_ignore_ascii_case(&local);
        let detail = format!("read back {pos} bytes with MD5 {remote}; the local file's MD5 is {local}");
        if ok || unchecked > 0 {
            return Ok(Check::new("content", ok, detail, resume));
        }
        // Every segment read back with its journaled MD5: the file is what changed.
        Ok(Check::new(
            "content",
            false,
            format!(
                "{detail}: every segment read back with the MD5 journaled when it was uploaded, so the file {} changed since",
                job.file
            ),
            || Repair {
                command: super::content::replace_command(job),
                does: "uploads the file as it is now in the object's place (or restore the file as it was uploaded)"
                    .into(),
            },
        ))
    }

    /// When the server does not hold `s`'s bytes as journaled: the segment named, what
    /// the object holding them is instead, and how the read met it (`why`).
    async fn segment_differs(
        &self,
        job: &crate::journal::JobRecord,
        naming: &SegmentNaming,
        segs: &[SegmentRecord],
        s: &SegmentRecord,
        why: &str,
    ) -> Result<Option<String>> {
        let (name, want, want_len) = holder(job.plan.manifest == ManifestKind::Slo, naming, segs, s);
        let head = self.swift.head(&naming.container, &name).await.map_err(|e| {
            e.into_error(ErrorKind::Resumable).context(format!(
                "job {}: checking {} of {}/{}",
                job.id,
                naming.label(s),
                job.container,
                job.object
            ))
        })?;
        let got = match &head {
            None => "is missing".to_string(),
            Some(h) if h.size == want_len && want.as_deref().is_some_and(|w| h.etag.eq_ignore_ascii_case(w)) => {
                return Ok(None);
            }
            Some(h) if h.size != want_len => format!("holds {} bytes with MD5 {}", h.size, h.etag),
            Some(h) => format!("holds MD5 {}", h.etag),
        };
        let of = if name == naming.name(s) { "the file's as journaled" } else { "the object its manifest entry names" };
        Ok(Some(format!(
            "{} (bytes {}-{}): {}/{name} {got}, expected MD5 {} ({want_len} bytes, {of}); {why}",
            naming.label(s),
            s.offset,
            (s.offset + s.length).saturating_sub(1),
            naming.container,
            want.as_deref().unwrap_or("(not journaled)")
        )))
    }

    /// `k5up abort JOB [--purge]`: removes the job's journal entry and deletes its
    /// segments (and sub-manifests), unless the object on the server is a manifest
    /// over them: then the object and its segments are kept (whatever the journal's
    /// phase says: a manifest written before an import failed or was interrupted is
    /// a readable object). `purge` deletes that object as well.
    pub async fn abort(&self, id: &str, purge: bool) -> Result<String> {
        let journal = self.open_job(id)?;
        let job = journal.job()?;
        let naming = naming_of(&job);
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable).context(format!("abort of job {id}"));
        let target = format!("{}/{}", job.container, job.object);
        let ours = self.manifest_over(&job, &naming).await?;
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
        let resp =
            self.swift.get(&job.container, &job.object, "multipart-manifest=get&format=raw").await.map_err(se)?;
        let entries: Vec<serde_json::Value> = resp.json().await.map_err(|e| {
            Error::resumable(format!("job {}: unreadable manifest of {}/{}: {e}", job.id, job.container, job.object))
        })?;
        let ours = [
            format!("/{}/{}", naming.container, naming.prefix),
            format!("/{}/{}", naming.container, naming.zero_prefix()),
        ];
        Ok(entries.iter().any(|e| e["path"].as_str().is_some_and(|p| ours.iter().any(|o| p.starts_with(o)))))
    }
}

/// The MD5 a segment's bytes must have: journaled, or that of its zeros.
fn expected_md5(s: &SegmentRecord) -> Option<String> {
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
fn holder(
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
fn trans_note(t: Option<&str>) -> String {
    t.map(|t| format!(", X-Trans-Id: {t}")).unwrap_or_default()
}
