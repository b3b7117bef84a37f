//! `verify` (compare the server with the journal, and optionally read the object
//! back) and `abort` (delete a job's segments and its journal).

use futures_util::StreamExt;
use md5::{Digest, Md5};
use serde::Serialize;

use super::{Engine, Settings, finish, naming_of};
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{Phase, SegState};
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
        let se = |e: crate::swift::SwiftError| e.into_error(ErrorKind::Resumable);

        // Segments: every journaled segment on the server with its MD5 and size.
        let listing = self.swift.list(&naming.container, &naming.prefix).await.map_err(se)?;
        let slo = job.plan.manifest == ManifestKind::Slo;
        let bad: Vec<String> = super::reconcile::missing_on_server(&segs, &listing, &naming, slo)
            .into_iter()
            .map(|s| naming.label(s))
            .collect();
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
        checks.push(Check {
            name: "segments".into(),
            ok: bad.is_empty(),
            detail: if bad.is_empty() {
                format!(
                    "{confirmed} confirmed segment(s) of {} on the server with their MD5 and size{zero_note}",
                    segs.len() - zeros
                )
            } else {
                format!(
                    "{} confirmed segment(s) missing or different on the server: {}",
                    bad.len(),
                    bad[..bad.len().min(20)].join(", ")
                )
            },
        });

        // The object and its manifest.
        let head = self.swift.head(&job.container, &job.object).await.map_err(se)?;
        let want = finish::expected_etag(&job, &segs, &naming);
        match &head {
            None => checks.push(Check {
                name: "object".into(),
                ok: false,
                detail: format!("{}/{} does not exist (phase {})", job.container, job.object, job.phase.as_str()),
            }),
            Some(h) => {
                checks.push(Check {
                    name: "object".into(),
                    ok: h.size == job.plan.file_size && h.etag.eq_ignore_ascii_case(&want),
                    detail: format!(
                        "size {} (expected {}), ETag {} (expected {want})",
                        h.size, job.plan.file_size, h.etag
                    ),
                });
                if !segs.is_empty() {
                    checks.push(self.check_manifest(&job, &naming, h, &segs).await?);
                }
            }
        }

        if deep {
            checks.push(self.read_back(&job).await?);
        }
        let ok = checks.iter().all(|c| c.ok);
        if !ok && job.phase != Phase::Done {
            checks.push(Check {
                name: "phase".into(),
                ok: false,
                detail: format!(
                    "the job is not complete (phase {}): `k5up resume {id}` finishes it",
                    job.phase.as_str()
                ),
            });
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
                }
            }
            ManifestKind::Slo => {
                let resp = self
                    .swift
                    .get(&job.container, &job.object, "multipart-manifest=get&format=raw")
                    .await
                    .map_err(|e| e.into_error(ErrorKind::Resumable))?;
                let entries: Vec<serde_json::Value> = resp.json().await.unwrap_or_default();
                // An entry with a range holds that range of its segment.
                let held = |e: &serde_json::Value| {
                    let range = e["range"].as_str().and_then(|r| r.split_once('-'));
                    match range.and_then(|(a, b)| Some(b.parse::<u64>().ok()? + 1 - a.parse::<u64>().ok()?)) {
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
                }
            }
        })
    }

    /// Reads the object back and compares its MD5 with the local file's.
    async fn read_back(&self, job: &crate::journal::JobRecord) -> Result<Check> {
        let path = job.file_path();
        let local = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
            let f = std::fs::File::open(&path)?;
            let len = crate::source::size_of(&f)?;
            Ok((crate::source::md5_range(&f, 0, len)?, len))
        });
        let resp =
            self.swift.get(&job.container, &job.object, "").await.map_err(|e| e.into_error(ErrorKind::Resumable))?;
        let mut stream = resp.bytes_stream();
        let mut h = Md5::new();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let c =
                chunk.map_err(|e| Error::resumable(format!("reading {}/{} back: {e}", job.container, job.object)))?;
            n += c.len() as u64;
            h.update(&c);
        }
        let remote = hex::encode(h.finalize());
        let (local, _) = local
            .await
            .map_err(|e| Error::failed(e.to_string()))?
            .map_err(|e| Error::io(format!("cannot read {}", job.file), e))?;
        Ok(Check {
            name: "content".into(),
            ok: remote == local && n == job.plan.file_size,
            detail: format!("read back {n} bytes with MD5 {remote}; the local file's MD5 is {local}"),
        })
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
