//! The tunables of a run, and which of them the user typed: the rest come from the
//! job's journal (its last run), then from the defaults.

use std::time::Duration;

use crate::model::RunSettings;

/// Tunables of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Segments in flight at once.
    pub concurrency: usize,
    /// A PUT without progress for this long is abandoned and retried.
    pub stall_timeout: Duration,
    /// `--bwlimit`: bytes per second for all segment bodies together.
    pub bwlimit: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { concurrency: 4, stall_timeout: Duration::from_secs(60), bwlimit: None }
    }
}

/// The tunables the user gave on this run's command line; the others come from the
/// job's journal (its last run), then from the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Given {
    /// `--concurrency`.
    pub concurrency: Option<usize>,
    /// `--stall-timeout`.
    pub stall_timeout: Option<Duration>,
    /// `--bwlimit` (`Some(None)`: `--bwlimit off`).
    pub bwlimit: Option<Option<u64>>,
}

impl Given {
    /// What a run of a job uses: these, else the journaled ones, else the defaults.
    pub(crate) fn over(&self, journaled: Option<RunSettings>) -> Settings {
        let base = journaled.map_or_else(Settings::default, |j| Settings {
            concurrency: (j.concurrency as usize).max(1),
            stall_timeout: Duration::from_millis(j.stall_timeout_ms),
            bwlimit: j.bwlimit,
        });
        Settings {
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            stall_timeout: self.stall_timeout.unwrap_or(base.stall_timeout),
            bwlimit: self.bwlimit.unwrap_or(base.bwlimit),
        }
    }
}

impl Settings {
    pub(super) fn journaled(&self) -> RunSettings {
        RunSettings {
            concurrency: self.concurrency as u32,
            stall_timeout_ms: self.stall_timeout.as_millis() as u64,
            bwlimit: self.bwlimit,
        }
    }
}
