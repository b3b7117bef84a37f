//! The Swift client: the only module that sends storage requests (through reqwest).
//! It knows nothing of jobs or the journal.
//!
//! Reference: <https://docs.openstack.org/api-ref/object-store/>

mod account;
pub(crate) mod auth;
pub(crate) mod capabilities;
mod containers;
pub(crate) mod creds;
pub(crate) mod dns;
pub(crate) mod error;
mod identity;
mod listing;
mod login;
pub(crate) mod manifest;
mod objects;
pub(crate) mod path;
mod probe;
mod request;
pub(crate) mod secret;
pub(crate) mod session;
pub(crate) mod url;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

pub(crate) use auth::{Auth, Credentials};
pub(crate) use capabilities::{Capabilities, Limits, StoreTraits, TempUrlDigest};
pub(crate) use error::{Origin, SwiftError};
pub(crate) use listing::ListEntry;
pub(crate) use objects::ObjectInfo;
pub(crate) use path::{dlo_manifest_value, enc_container, enc_object, object_path};
pub(crate) use reqwest::Body;
pub(crate) use secret::Secret;
pub(crate) use session::{ClientOptions, Session};

use crate::error::Result;
use crate::retry::Policy;

/// A Swift account: the storage operations, sent through one [`Session`].
#[derive(Debug, Clone)]
pub(crate) struct Swift {
    session: Session,
    /// What each storage URL's store can do, read once (shared by every clone).
    capabilities: Arc<Mutex<HashMap<String, Capabilities>>>,
}

impl Swift {
    /// A client for `creds`.
    pub(crate) fn new(creds: Credentials, opts: &ClientOptions) -> Result<Self> {
        Ok(Swift { session: Session::new(creds, opts)?, capabilities: Arc::default() })
    }

    /// The authenticated session (for Glance and vmimport).
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The token manager.
    pub(crate) fn auth(&self) -> &Auth {
        self.session.auth()
    }

    /// The same client (sharing its token) with a shorter, quiet retry budget.
    pub(crate) fn with_retry_for(&self, retry_for: Duration) -> Swift {
        Swift { session: self.session.with_retry_for(retry_for), capabilities: self.capabilities.clone() }
    }

    /// The same client (sharing its token) for the first contact of a new job: a
    /// host that does not resolve, a refused connection or a refused TLS handshake
    /// fail at once (a wrong URL, most likely); other failures are retried as usual,
    /// and said on stderr.
    pub(crate) fn first_contact(&self) -> Swift {
        Swift { session: self.session.first_contact(), capabilities: self.capabilities.clone() }
    }

    /// The retry policy.
    pub(crate) fn policy(&self) -> &Policy {
        self.session.policy()
    }

    /// Logs in (with retries) and returns the storage URL.
    pub(crate) async fn storage_url(&self) -> Result<String, SwiftError> {
        self.session.storage_url().await
    }
}
