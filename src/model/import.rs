//! What the image import is asked to do, and where it stands on the server.

use serde::{Deserialize, Serialize};

use crate::digest::Algo;

/// Which image service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportKind {
    /// Fujitsu K5 vmimport.
    K5,
    /// OpenStack Glance (image v2, web-download).
    Glance,
}

impl ImportKind {
    /// `k5` or `glance`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::K5 => "k5",
            ImportKind::Glance => "glance",
        }
    }

    /// The whole-image digests this import needs: SHA-1 for K5's `checksum`,
    /// SHA-512 to check Glance's `os_hash_value`.
    pub fn digests(self) -> &'static [Algo] {
        match self {
            ImportKind::K5 => &[Algo::Sha1],
            ImportKind::Glance => &[Algo::Sha512],
        }
    }
}

/// What to import, as journaled with the job (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSpec {
    /// The service.
    pub kind: ImportKind,
    /// The image's name.
    pub image_name: String,
    /// K5's `os_type`.
    pub os_type: Option<String>,
    /// Glance's `disk_format` (detected from the file unless given).
    pub disk_format: String,
    /// Minimum RAM (MB).
    pub min_ram: Option<u64>,
    /// Minimum disk (GB).
    pub min_disk: Option<u64>,
    /// `--vmimport-url` / `--glance-url`; `None`: from the K5 profile or the catalog.
    pub endpoint: Option<String>,
    /// K5 regions that convert images need `conversion`, `user_name`, `password`, `domain_name`.
    pub k5_conversion: bool,
    /// Allow the password to vmimport over plain http to a loopback address (tests).
    pub allow_http_password: bool,
}

/// Where an import stands on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOutcome {
    /// Requested (or about to be); not finished.
    Running,
    /// The image is registered and verified.
    Succeeded,
    /// The service reported a failure (see `message`).
    Failed,
}

/// The journaled state of the image import. Its ids are derived from the job and
/// the attempt number, so a crash between the request and this record cannot
/// lead to a second import: the next run finds the first one by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportState {
    /// K5 vmimport or Glance.
    pub kind: ImportKind,
    /// 1 for the first import of this job; a new attempt after a failure adds one.
    pub attempt: u32,
    /// The image id (asked for by k5up, so known before the request).
    pub image_id: String,
    /// K5's `import_id`, once the request was accepted.
    pub import_id: Option<String>,
    /// The last status the service reported; k5up's own steps of a glance-direct
    /// import in between: `staging` (the data being sent), `staged`.
    pub status: String,
    /// The last progress (percent) the service reported.
    pub progress: Option<u8>,
    /// Running, succeeded or failed.
    pub outcome: ImportOutcome,
    /// The service's failure message; before that, why a Glance import went
    /// glance-direct instead of web-download (kept after success).
    pub message: Option<String>,
}
