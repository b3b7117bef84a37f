//! What every segment task of one upload run shares ([`Ctx`]), how a segment got
//! confirmed ([`Outcome`]), and the link signals a task reports.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use crate::journal::{Journal, SegmentRecord};
use crate::names::SegmentNaming;
use crate::swift::{ListEntry, Swift};
use crate::transfer::progress::Progress;

/// What every segment task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The storage client.
    pub swift: Swift,
    /// The job's journal.
    pub journal: Arc<Journal>,
    /// The source, opened once.
    pub file: Arc<File>,
    /// Segment names.
    pub naming: SegmentNaming,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// A PUT with no progress for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// The job id, for messages.
    pub job_id: String,
    /// The source's size when the job was created: a file that grew or shrank is refused.
    pub file_size: u64,
    /// The plan's (largest) segment size.
    pub segment_size: u64,
    /// `--bwlimit`, shared by every body.
    pub pacer: Option<Arc<crate::transfer::pace::Pacer>>,
    /// How large a segment the link carries (splits segments on a link that breaks).
    pub sizer: crate::transfer::sizer::Sizer,
    /// The rest of a split segment goes back to the pool through this.
    pub requeue: tokio::sync::mpsc::UnboundedSender<(SegmentRecord, Option<ListEntry>)>,
    /// Zero runs of at least this many bytes are cut out and not sent (`None`: all
    /// bytes are sent).
    pub zero_rule: Option<crate::zeros::ZeroRule>,
    /// Segments split for the link only while the job has fewer than this many (a
    /// store that cannot nest manifests: every one must fit in one); `None`: no limit.
    pub split_cap: Option<u64>,
    /// Where a DLO's zero segments are copied from (`None` for an SLO: its manifest
    /// points at one zero object).
    pub zeros: Option<Arc<super::zero_source::ZeroSource>>,
    /// What the server held under the job's prefix when the run began, by (offset,
    /// length): pieces a split makes are adopted if an earlier run left them whole.
    pub listed: Arc<std::collections::HashMap<(u64, u64), ListEntry>>,
    /// Confirmed data segments of the job, for repeats (`None`: every segment is sent).
    pub originals: Option<super::repeats::Originals>,
    /// The segments of `--base` by (MD5, length): (container, name) to copy from.
    pub base: std::collections::HashMap<(String, u64), (String, String)>,
    /// Whether a segment the hasher left unhashed is hashed while it is sent (read
    /// from storage once; no repeats looked for), or hashed, then sent: chosen per
    /// segment ([`super::ReadMode`]).
    pub read_mode: super::ReadMode,
    /// When segments are hashed while sent and whole-image digests are computed:
    /// the digests read what the bodies read, from the page cache.
    pub shared_reads: Option<Arc<super::shared_reads::SharedReads>>,
}

/// How a segment got confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Sent by this run.
    Sent,
    /// Found whole on the server (MD5 and size match): not sent again.
    Adopted,
    /// Zeros: not sent (an SLO points at the zero object; a DLO copies it).
    Zero,
    /// The bytes of another confirmed segment of the job: not sent.
    Repeat,
    /// Copied on the server from a segment of the base: not sent.
    Copied,
}

impl Ctx {
    /// True when segments made on the server are objects of their own (a DLO: its
    /// listing is the object), false for an SLO (its manifest points at the source).
    pub(super) fn zero_objects(&self) -> bool {
        self.zeros.is_some()
    }

    /// What the server held at the start of the run under `seg`'s name, if anything.
    pub(super) fn hint(&self, seg: &SegmentRecord) -> Option<ListEntry> {
        self.listed.get(&(seg.offset, seg.length)).cloned()
    }

    /// The bytes sent by this run, the streams in flight and the run's seconds so
    /// far: what the sizer reads.
    pub(super) fn link_counters(&self) -> (u64, u64, f64) {
        let p = &self.progress;
        (Progress::get(&p.run_bytes_sent), Progress::get(&p.in_flight).max(1), p.started.elapsed().as_secs_f64())
    }

    pub(super) fn link_failed(&self) {
        self.progress.link_failed();
        let (sent, streams, _) = self.link_counters();
        self.sizer.broke(sent, streams);
    }

    pub(super) fn link_ok(&self) {
        self.progress.link_ok();
        self.sizer.answered(self.link_counters().0);
    }
}
