//! The token manager: one token for all workers, refreshed shortly before it
//! expires and once on a 401. Who the user is, and what a token says, are in
//! `identity`; logging in is in `login`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Mutex;

use super::error::SwiftError;
pub(crate) use super::identity::{Credentials, Keystone, KeystoneMethod, NameOrId, Scope, Token, Unavailable};
use super::login::catalog_endpoint;

/// Hands out a valid token to every worker; one login at a time serves them all.
pub(crate) struct Auth {
    creds: Credentials,
    http: reqwest::Client,
    current: Mutex<Option<Arc<Token>>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auth({})", self.creds.describe())
    }
}

impl Auth {
    /// A token manager for `creds`.
    pub(crate) fn new(creds: Credentials, http: reqwest::Client) -> Self {
        Auth { creds, http, current: Mutex::new(None) }
    }

    /// The credentials' description.
    pub(crate) fn describe(&self) -> String {
        self.creds.describe()
    }

    /// The credentials (their secrets stay wrapped).
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// A token valid for at least a little while; logs in if needed. Concurrent
    /// callers wait for the one login in progress instead of starting their own.
    pub(crate) async fn token(&self) -> Result<Arc<Token>, SwiftError> {
        let mut cur = self.current.lock().await;
        if let Some(t) = cur.as_ref() {
            if !t.stale(Instant::now()) {
                return Ok(t.clone());
            }
            tracing::debug!("token expires soon: refreshing");
        }
        let t = Arc::new(self.login().await?);
        *cur = Some(t.clone());
        Ok(t)
    }

    /// Drops `rejected` (after a 401) so the next [`Auth::token`] logs in again;
    /// a token already replaced by another worker is left alone.
    pub(crate) async fn invalidate(&self, rejected: &Arc<Token>) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().is_some_and(|t| Arc::ptr_eq(t, rejected)) {
            *cur = None;
        }
    }

    /// The URL of another service (`image`) from the Keystone catalog, with the
    /// interface and region the object store was chosen with.
    pub(crate) async fn service_url(&self, kind: &str) -> Result<String, Unavailable> {
        let t = self.token().await.map_err(Unavailable::Login)?;
        let (Some(catalog), Credentials::Keystone(k)) = (&t.catalog, &self.creds) else {
            return Err(Unavailable::Missing(format!(
                "no service catalog: the {kind} endpoint is only found with Keystone credentials"
            )));
        };
        catalog_endpoint(catalog, kind, &k.interface, k.region.as_deref()).map_err(Unavailable::Missing)
    }

    /// The project and user of the current token (Keystone only).
    pub(crate) async fn scope(&self) -> Result<Scope, Unavailable> {
        let t = self.token().await.map_err(Unavailable::Login)?;
        t.scope.clone().ok_or_else(|| {
            Unavailable::Missing(
                "these credentials are not Keystone credentials scoped to a project (sharing an image needs them)"
                    .into(),
            )
        })
    }

    /// Keystone's identity API (`…/v3`), when the job logs in with Keystone.
    pub(crate) fn identity_url(&self) -> Option<String> {
        let k = self.keystone()?;
        let base = k.auth_url.trim_end_matches('/');
        Some(if base.ends_with("/v3") { base.to_string() } else { format!("{base}/v3") })
    }

    /// The Keystone credentials, when the job logs in with Keystone.
    pub(crate) fn keystone(&self) -> Option<&Keystone> {
        match &self.creds {
            Credentials::Keystone(k) => Some(k),
            _ => None,
        }
    }

    /// True when a rejected token can be replaced by logging in again.
    pub(crate) fn can_refresh(&self) -> bool {
        !matches!(self.creds, Credentials::Token { .. })
    }

    async fn login(&self) -> Result<Token, SwiftError> {
        match &self.creds {
            Credentials::V1 { url, user, key } => super::login::v1(&self.http, url, user, key).await,
            Credentials::Keystone(k) => super::login::keystone(&self.http, k).await,
            Credentials::Token { storage_url, token } => Ok(Token {
                value: token.clone(),
                storage_url: storage_url.trim_end_matches('/').to_string(),
                issued: Instant::now(),
                expires: None,
                catalog: None,
                scope: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swift::secret::Secret;

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::V1 { url: "u".into(), user: "a:b".into(), key: Secret::new("hunter2") };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.describe().contains("hunter2"));
    }
}
