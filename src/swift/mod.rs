//! The Swift client: the only module that sends storage requests (through reqwest).
//! It knows nothing of jobs or the journal.
//!
//! Reference: <https://docs.openstack.org/api-ref/object-store/>

mod account;
pub mod auth;
pub mod capabilities;
mod containers;
pub mod creds;
pub mod dns;
pub mod error;
mod identity;
mod listing;
mod login;
pub mod manifest;
mod objects;
pub mod path;
mod request;
pub mod secret;
pub mod session;
pub mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub use auth::{Auth, Credentials};
pub use capabilities::{Capabilities, Limits, SloLimits, TempUrlDigest};
pub use creds::TlsSettings;
pub use error::{Origin, SwiftError};
pub use listing::ListEntry;
pub use login::{catalog_endpoint, parse_rfc3339};
pub use objects::ObjectInfo;
pub use path::{copy_source_value, dlo_manifest_value, enc_container, enc_object, object_path};
pub use reqwest::Body;
pub use secret::Secret;
pub use session::{ClientOptions, Session, http_client};

use crate::error::Result;
use crate::retry::Policy;

/// A Swift account: the storage operations, sent through one [`Session`].
#[derive(Debug, Clone)]
pub struct Swift {
    session: Session,
    /// What each storage URL's store can do, read once (shared by every clone).
    capabilities: Arc<Mutex<HashMap<String, Capabilities>>>,
}

impl Swift {
    /// A client for `creds`.
    pub fn new(creds: Credentials, opts: &ClientOptions) -> Result<Self> {
        Ok(Swift { session: Session::new(creds, opts)?, capabilities: Arc::default() })
    }

    /// The authenticated session (for Glance and vmimport).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The token manager.
    pub fn auth(&self) -> &Auth {
        self.session.auth()
    }

    /// The same client (sharing its token) with a shorter, quiet retry budget.
    pub fn with_retry_for(&self, retry_for: Duration) -> Swift {
        Swift { session: self.session.with_retry_for(retry_for), capabilities: self.capabilities.clone() }
    }

    /// The same client (sharing its token) for the first contact of a new job: a
    /// host that does not resolve, a refused connection or a refused TLS handshake
    /// fail at once (a wrong URL, most likely); other failures are retried as usual,
    /// and said on stderr.
    pub fn first_contact(&self) -> Swift {
        Swift { session: self.session.first_contact(), capabilities: self.capabilities.clone() }
    }

    /// The retry policy.
    pub fn policy(&self) -> &Policy {
        self.session.policy()
    }

    /// Logs in (with retries) and returns the storage URL.
    pub async fn storage_url(&self) -> Result<String, SwiftError> {
        self.session.storage_url().await
    }
}
