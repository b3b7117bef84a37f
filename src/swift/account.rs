//! Calls on the account itself: its metadata (TempURL keys live there).

use reqwest::Method;

use super::{Secret, Swift, SwiftError};

impl Swift {
    /// The account's metadata headers (`X-Account-Meta-*`), lower-case names.
    pub(crate) async fn account_meta(&self) -> Result<Vec<(String, String)>, SwiftError> {
        let resp = self.send_account("HEAD the account", Method::HEAD, |r| r).await?;
        Ok(resp
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-account-meta-"))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect())
    }

    /// Sets one account metadata header (`X-Account-Meta-<name>`) to a secret value,
    /// sent as a sensitive header.
    pub(crate) async fn set_account_secret(&self, name: &str, value: &Secret) -> Result<(), SwiftError> {
        let op = format!("POST the account (set X-Account-Meta-{name})");
        let v = value.header(&op)?;
        let header = format!("X-Account-Meta-{name}");
        self.send_account(&op, Method::POST, |r| r.header(header.as_str(), v.clone())).await.map(|_| ())
    }
}
