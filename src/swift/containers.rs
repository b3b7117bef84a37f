//! Calls on a container: create it, read its versioning, probe it.

use reqwest::Method;

use super::request::unless_404;
use super::{Swift, SwiftError};

impl Swift {
    /// Creates `container` if it does not exist; true when it was created.
    pub(crate) async fn ensure_container(&self, container: &str) -> Result<bool, SwiftError> {
        if self.container_exists(container).await? {
            return Ok(false);
        }
        let op = format!("create container {container}");
        self.send_retrying(&op, Method::PUT, container, None, "", |r| r.header("Content-Length", "0")).await?;
        Ok(true)
    }

    /// HEADs `container`: false when it does not exist. A store that refuses the
    /// name (Ceph RGW: under 3 bytes, HTTP 400) fails with that status.
    pub(crate) async fn container_exists(&self, container: &str) -> Result<bool, SwiftError> {
        let op = format!("HEAD container {container}");
        Ok(unless_404(self.send_retrying(&op, Method::HEAD, container, None, "", |r| r).await)?.is_some())
    }

    /// DELETEs `container` (empty); false when it was not there.
    pub(crate) async fn delete_container(&self, container: &str) -> Result<bool, SwiftError> {
        let op = format!("DELETE container {container}");
        Ok(unless_404(self.send_retrying(&op, Method::DELETE, container, None, "", |r| r).await)?.is_some())
    }

    /// How `container` keeps overwritten objects, if it does: the versioning header
    /// it carries (`X-History-Location`, `X-Versions-Location`, or
    /// `X-Versions-Enabled: true`) and its value. Old versions of a large object
    /// kept there are manifests that name the old segments. `None`: no versioning,
    /// or no such container.
    pub(crate) async fn versioning(&self, container: &str) -> Result<Option<(String, String)>, SwiftError> {
        let op = format!("HEAD container {container}");
        let Some(resp) = unless_404(self.send_retrying(&op, Method::HEAD, container, None, "", |r| r).await)? else {
            return Ok(None);
        };
        let h = resp.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        for n in ["x-history-location", "x-versions-location"] {
            if let Some(v) = get(n).filter(|v| !v.is_empty()) {
                return Ok(Some((n.to_string(), v)));
            }
        }
        Ok(get("x-versions-enabled")
            .filter(|v| v.eq_ignore_ascii_case("true"))
            .map(|v| ("x-versions-enabled".into(), v)))
    }

    /// One HEAD of a container, no retry: is the server reachable again?
    pub(crate) async fn probe(&self, container: &str) -> Result<(), SwiftError> {
        let op = format!("HEAD {container} (is the link back?)");
        self.send(&op, Method::HEAD, container, None, "", |r| r).await.map(|_| ())
    }
}
