//! Container listings: every object under a prefix, page after page.

use reqwest::Method;
use serde::Deserialize;

use super::path::enc_object;
use super::{Swift, SwiftError};
use crate::retry::Class;

/// One object in a container listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct ListEntry {
    /// Object name.
    pub name: String,
    /// MD5 hex of its content (for an SLO, of its manifest).
    #[serde(default)]
    pub hash: String,
    /// Bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Last modification, as the listing gives it.
    #[serde(default)]
    pub last_modified: String,
}

impl Swift {
    /// Lists the objects of `container` whose names start with `prefix`, all pages.
    /// A missing container lists as empty.
    pub(crate) async fn list(&self, container: &str, prefix: &str) -> Result<Vec<ListEntry>, SwiftError> {
        let mut out: Vec<ListEntry> = vec![];
        loop {
            let mut q = format!("format=json&prefix={}", enc_object(prefix));
            if let Some(last) = out.last() {
                q.push_str(&format!("&marker={}", enc_object(&last.name)));
            }
            let op = format!("list {container} (prefix {prefix})");
            let resp = match self.send_retrying(&op, Method::GET, container, None, &q, |r| r).await {
                Ok(r) => r,
                Err(e) if e.status == Some(404) => return Ok(out),
                Err(e) => return Err(e),
            };
            let page: Vec<ListEntry> = resp
                .json()
                .await
                .map_err(|e| SwiftError::local(&op, format!("unreadable listing: {e}"), Class::Transient))?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }
}
