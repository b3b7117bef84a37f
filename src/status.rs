//! What `status` and `jobs` show, built from the journal (job idle) or from a live
//! run's counters (written as the job's snapshot about once a second).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::digest::DigestState;
use crate::journal::{ImportOutcome, ImportState, JobRecord, Journal, Root, SegState, SegmentRecord, ShareState};
use crate::model::Direction;
use crate::transfer::progress::Progress;

/// The state of one job, as `status --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusView {
    /// Job id.
    pub job: String,
    /// `uploading`, `manifest`, `importing`, `sharing`, `done`, `failed`, or `damaged`
    /// (the journal cannot be read: `last_error` says why, `hint` how it is rebuilt).
    pub phase: String,
    /// `upload` or `download` (a snapshot of an older k5up has none: an upload).
    #[serde(default)]
    pub direction: Direction,
    /// True while a k5up process works on the job.
    pub running: bool,
    /// That process's id.
    pub pid: Option<u32>,
    /// The local file: an upload's source, a download's target.
    pub file: String,
    /// The object's container (an upload's target, a download's source).
    pub container: String,
    /// The object (an upload's target, a download's source).
    pub object: String,
    /// Container of the segments.
    pub segment_container: String,
    /// `slo` or `dlo`.
    pub manifest: String,
    /// Bytes per segment as planned (the largest; the first ones of an SLO are smaller).
    pub segment_size: u64,
    /// The largest segment started now, while the link limits it (`null`: the plan's).
    #[serde(default)]
    pub segment_size_now: Option<u64>,
    /// Segments split so far because the link carried less than them (all runs).
    #[serde(default)]
    pub splits: u64,
    /// Segments of the job now (the plan's, plus one per split).
    pub segments_total: u64,
    /// Segments on the server and journaled.
    pub segments_confirmed: u64,
    /// Bytes in the file.
    pub bytes_total: u64,
    /// Bytes in confirmed segments.
    pub bytes_confirmed: u64,
    /// Bytes put on the wire for this job across all runs, retries included (a PUT cut
    /// off by a kill counts whole: an upper bound).
    pub bytes_sent: u64,
    /// Bytes sent that did not end in a confirmed segment.
    pub bytes_wasted: u64,
    /// Bytes of zeros (holes, and runs of zero MiB blocks) that are not sent: the
    /// server makes them.
    #[serde(default)]
    pub bytes_zero: u64,
    /// Bytes of segments that repeat another segment of the image (same MD5 and
    /// length): not sent; the server holds them once.
    #[serde(default)]
    pub bytes_deduplicated: u64,
    /// Bytes of segments copied on the server from the base (`--base`): not sent.
    #[serde(default)]
    pub bytes_copied_server_side: u64,
    /// The share of the bytes sent that ended in confirmed segments (`null`: nothing
    /// sent yet). k5up cannot see the link's capacity; `bench/flaky.py` measures
    /// goodput against it.
    #[serde(default)]
    pub goodput: Option<f64>,
    /// ETag of the finished object.
    pub manifest_etag: Option<String>,
    /// The error that stopped the last run.
    pub last_error: Option<String>,
    /// Account storage URL.
    pub storage_url: String,
    /// Runs that worked on this job.
    pub runs: u32,
    /// Segments in flight allowed now (adaptive; 0 when not running).
    #[serde(default)]
    pub concurrency: u64,
    /// Whole-image digests computed so far (algorithm → hex), complete values only.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
    /// The image import, once started.
    #[serde(default)]
    pub import: Option<ImportView>,
    /// The projects the image is shared with: project id → Glance's member status
    /// (`pending` until that project accepts, `accepted`, `rejected`), or `to share`
    /// while k5up has not added it yet.
    #[serde(default)]
    pub shared_with: BTreeMap<String, String>,
    /// The names those projects were given by (project id → name), when given by name.
    #[serde(default)]
    pub shared_with_names: BTreeMap<String, String>,
    /// Outages this run saw (the link going down: resets, refusals, timeouts, stalls).
    #[serde(default)]
    pub outages: u64,
    /// Seconds the link has been down, while it is (`null`: up, or not running).
    #[serde(default)]
    pub link_down_secs: Option<u64>,
    /// The tunables of the job's last run (kept for `resume`).
    #[serde(default)]
    pub settings: Option<SettingsView>,
    /// What the user can do about the job's state (`damaged`: how it is rebuilt).
    #[serde(default)]
    pub hint: Option<String>,
}

/// The tunables part of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SettingsView {
    /// `--concurrency`.
    pub concurrency: u32,
    /// `--stall-timeout`, milliseconds.
    pub stall_timeout_ms: u64,
    /// `--bwlimit`, bytes per second (`null`: none).
    pub bwlimit: Option<u64>,
}

impl SettingsView {
    fn of(s: &crate::journal::RunSettings) -> Self {
        SettingsView { concurrency: s.concurrency, stall_timeout_ms: s.stall_timeout_ms, bwlimit: s.bwlimit }
    }
}

/// The import part of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImportView {
    /// `k5` or `glance`.
    pub kind: String,
    /// The image id.
    pub id: String,
    /// K5's import id.
    pub import_id: Option<String>,
    /// The service's last status (`queued`, `processing`, `importing`, `active`, `succeeded`, ...).
    pub status: String,
    /// Percent, when the service reports it (K5).
    pub progress: Option<u8>,
    /// `running`, `succeeded` or `failed`.
    pub outcome: String,
    /// The service's failure message, or why a Glance import went glance-direct.
    pub message: Option<String>,
}

impl ImportView {
    fn of(s: &ImportState) -> Self {
        ImportView {
            kind: s.kind.as_str().into(),
            id: s.image_id.clone(),
            import_id: s.import_id.clone(),
            status: s.status.clone(),
            progress: s.progress,
            outcome: match s.outcome {
                ImportOutcome::Running => "running",
                ImportOutcome::Succeeded => "succeeded",
                ImportOutcome::Failed => "failed",
            }
            .into(),
            message: s.message.clone(),
        }
    }
}

impl StatusView {
    fn base(job: &JobRecord) -> Self {
        StatusView {
            job: job.id.clone(),
            phase: job.phase.as_str().to_string(),
            direction: job.direction,
            running: false,
            pid: None,
            file: job.file.clone(),
            container: job.container.clone(),
            object: job.object.clone(),
            segment_container: job.segment_container.clone(),
            manifest: job.plan.manifest.as_str().to_string(),
            segment_size: job.plan.segment_size,
            segment_size_now: None,
            splits: 0,
            segments_total: job.plan.segment_count,
            segments_confirmed: 0,
            bytes_total: job.plan.file_size,
            bytes_confirmed: 0,
            bytes_sent: job.bytes_sent_other,
            bytes_wasted: 0,
            bytes_zero: 0,
            bytes_deduplicated: 0,
            bytes_copied_server_side: 0,
            goodput: None,
            manifest_etag: job.manifest_etag.clone(),
            last_error: job.last_error.clone(),
            storage_url: job.storage_url.clone(),
            runs: job.runs,
            concurrency: 0,
            digests: BTreeMap::new(),
            import: None,
            shared_with: BTreeMap::new(),
            shared_with_names: BTreeMap::new(),
            outages: 0,
            link_down_secs: None,
            settings: None,
            hint: None,
        }
    }

    /// Adds the digests and the import state.
    pub(crate) fn with_extras(mut self, digests: &DigestState, import: Option<&ImportState>) -> Self {
        self.digests = digests.values.iter().map(|(a, v)| (a.as_str().to_string(), v.clone())).collect();
        self.import = import.map(ImportView::of);
        self
    }

    /// Adds the sharing step's state.
    pub(crate) fn with_share(mut self, share: Option<&ShareState>) -> Self {
        for t in share.map(|s| s.targets.as_slice()).unwrap_or_default() {
            let status = share.and_then(|s| s.status_of(&t.id)).unwrap_or("to share");
            self.shared_with.insert(t.id.clone(), status.to_string());
            if let Some(n) = &t.name {
                self.shared_with_names.insert(t.id.clone(), n.clone());
            }
        }
        self
    }

    /// From the journal: records, digests, import.
    pub(crate) fn from_journal(job: &JobRecord, j: &Journal) -> Result<Self> {
        let segs = j.segments()?;
        let mut v = Self::from_records(job, &segs)
            .with_extras(&j.digest()?, j.import()?.as_ref())
            .with_share(j.share()?.as_ref());
        v.settings = j.settings()?.as_ref().map(SettingsView::of);
        v.splits = j.splits()?;
        Ok(v)
    }

    /// From the journal's records.
    pub(crate) fn from_records(job: &JobRecord, segs: &[SegmentRecord]) -> Self {
        let mut v = Self::base(job);
        v.segments_total = segs.len() as u64;
        for s in segs {
            if s.is_zero() {
                v.bytes_zero += s.length;
            }
            if s.repeat_of().is_some() {
                v.bytes_deduplicated += s.length;
            }
            if s.kind == crate::journal::SegKind::Copied {
                v.bytes_copied_server_side += s.length;
            }
            let sent = s.sent + s.inflight;
            v.bytes_sent += sent;
            if s.state == SegState::Confirmed {
                v.segments_confirmed += 1;
                v.bytes_confirmed += s.length;
                v.bytes_wasted += sent.saturating_sub(s.length);
            } else {
                v.bytes_wasted += sent;
            }
        }
        v.goodput = v.ratio();
        v
    }

    fn ratio(&self) -> Option<f64> {
        let sent = self.bytes_sent;
        (sent > 0).then(|| (sent.saturating_sub(self.bytes_wasted)) as f64 / sent as f64)
    }

    /// From a live run's counters.
    pub(crate) fn live(job: &JobRecord, p: &Progress) -> Self {
        let mut v = Self::base(job);
        v.running = true;
        v.pid = Some(std::process::id());
        v.segments_confirmed = Progress::get(&p.segments_confirmed);
        v.bytes_confirmed = Progress::get(&p.bytes_confirmed);
        v.bytes_sent += Progress::get(&p.bytes_sent);
        v.bytes_wasted = Progress::get(&p.bytes_wasted);
        v.bytes_zero = Progress::get(&p.bytes_zero);
        v.bytes_deduplicated = Progress::get(&p.bytes_repeated);
        v.bytes_copied_server_side = Progress::get(&p.bytes_copied);
        v.concurrency = Progress::get(&p.concurrency);
        v.segments_total = Some(Progress::get(&p.segments_total)).filter(|&n| n > 0).unwrap_or(v.segments_total);
        v.splits = Progress::get(&p.splits);
        v.segment_size_now = Some(Progress::get(&p.segment_target)).filter(|&t| t > 0 && t < job.plan.segment_size);
        v.goodput = v.ratio();
        v.outages = Progress::get(&p.outages);
        v.link_down_secs = p.link_down_for().map(|d| d.as_secs());
        let x = p.extras.lock().map(|x| x.clone()).unwrap_or_default();
        v.settings = x.settings.as_ref().map(SettingsView::of);
        v.with_extras(&x.digests, x.import.as_ref()).with_share(x.share.as_ref())
    }
}

/// The status of job `id`: read from its journal when no process holds it, else
/// from the snapshot the running process keeps up to date.
pub(crate) fn read(root: &Root, id: &str) -> Result<StatusView> {
    let opened = root.open_reader(id).and_then(|j| match j {
        Some(j) => j.job().and_then(|job| StatusView::from_journal(&job, &j)).map(Some),
        None => Ok(None),
    });
    match opened {
        Ok(Some(v)) => Ok(v),
        Err(e) if e.is_damage() => damaged(root, id, e),
        Err(e) => Err(e),
        Ok(None) => {
            let raw = root.read_snapshot(id).unwrap_or_default();
            let mut v: StatusView = serde_json::from_slice(&raw).map_err(|_| {
                crate::Error::failed(format!(
                    "job {id} is busy and its status snapshot is unreadable; try again in a second"
                ))
            })?;
            v.running = true;
            Ok(v)
        }
    }
}

/// A job whose journal is damaged, from its birth record: listed (phase `damaged`,
/// what is wrong, how it is rebuilt), never hidden. Without a birth record there is
/// nothing to show but the error.
fn damaged(root: &Root, id: &str, e: crate::Error) -> Result<StatusView> {
    let Some(job) = root.birth(id) else { return Err(e) };
    let mut v = StatusView::base(&job);
    v.phase = "damaged".into();
    v.segments_total = 0;
    v.manifest_etag = None;
    v.last_error = Some(e.msg);
    v.hint = e.hint;
    Ok(v)
}
