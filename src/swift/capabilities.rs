//! What the store can do: `GET /info`, read beside the storage URL.

use reqwest::Method;

use super::{Origin, Swift, SwiftError, url};
use crate::plan::{Limits, SloLimits};
use crate::retry::{self, Class};

impl Swift {
    /// The server's limits from `GET /info`; Swift's documented defaults when `/info`
    /// is disabled or unreadable.
    pub async fn limits(&self) -> Result<Limits, SwiftError> {
        let storage = self.storage_url().await?;
        let Some(url) = url::info_url(&storage) else {
            tracing::info!("{storage} is not a URL /info can be found beside: using Swift's default limits");
            return Ok(Limits::swift_defaults());
        };
        let op = format!("GET {url}");
        let resp = retry::retry(self.policy(), &op, |_| async {
            self.session.http().get(&url).send().await.map_err(|e| SwiftError::transport(&op, &e))
        })
        .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            // A Swift proxy answers /info (403 when its operator hid it): a 404 is most
            // often a URL that is no Swift account at all. The account decides.
            self.account_answers(&op, &url, &storage).await?;
            tracing::info!("{url} answered 404, but the account answers: using Swift's default limits");
            return Ok(Limits::swift_defaults());
        }
        if !resp.status().is_success() {
            tracing::info!("{url} answered {}: using Swift's default limits", resp.status());
            return Ok(Limits::swift_defaults());
        }
        let v: serde_json::Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("{url}: unreadable ({e}); using Swift's default limits");
                return Ok(Limits::swift_defaults());
            }
        };
        let d = Limits::swift_defaults();
        let ds = d.slo.clone().expect("defaults have SLO");
        let num = |v: &serde_json::Value, dflt: u64| v.as_u64().unwrap_or(dflt);
        Ok(Limits {
            max_file_size: num(&v["swift"]["max_file_size"], d.max_file_size),
            container_listing_limit: num(&v["swift"]["container_listing_limit"], d.container_listing_limit),
            slo: v.get("slo").map(|s| SloLimits {
                max_manifest_segments: num(&s["max_manifest_segments"], ds.max_manifest_segments),
                max_manifest_size: num(&s["max_manifest_size"], ds.max_manifest_size),
                min_segment_size: num(&s["min_segment_size"], ds.min_segment_size),
            }),
            from_info: true,
        })
    }

    /// After `/info` answered 404: `HEAD` of the account; a 404 there too means the
    /// storage URL is not a Swift account (an error of origin `Endpoint`).
    async fn account_answers(&self, op: &str, info: &str, storage: &str) -> Result<(), SwiftError> {
        match self.send_account(&format!("HEAD {storage}"), Method::HEAD, |r| r).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) => Err(SwiftError {
                origin: Origin::Endpoint,
                trans_id: e.trans_id,
                ..SwiftError::local(
                    op,
                    format!("this is not a Swift storage URL: {info} and the account {storage} both answered HTTP 404"),
                    Class::Fatal,
                )
            }),
            Err(e) => Err(e),
        }
    }
}
