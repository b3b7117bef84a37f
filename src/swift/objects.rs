//! Calls on an object: HEAD, GET, DELETE, PUT (small objects, segments, SLO
//! manifests) and server-side copies.

use reqwest::{Method, Response};

use super::path::copy_source_value;
use super::request::unless_404;
use super::{Body, Swift, SwiftError, manifest};
use crate::retry::Class;

/// What a HEAD says of an object.
#[derive(Debug, Clone)]
pub(crate) struct ObjectInfo {
    /// Content-Length.
    pub size: u64,
    /// ETag, unquoted.
    pub etag: String,
    /// `X-Static-Large-Object: True`.
    pub slo: bool,
    /// `X-Object-Manifest`, for a DLO.
    pub dlo_manifest: Option<String>,
}

impl Swift {
    /// HEADs an object; `None` when it does not exist.
    pub(crate) async fn head(&self, container: &str, object: &str) -> Result<Option<ObjectInfo>, SwiftError> {
        let op = format!("HEAD {container}/{object}");
        let Some(resp) = unless_404(self.send_retrying(&op, Method::HEAD, container, Some(object), "", |r| r).await)?
        else {
            return Ok(None);
        };
        let h = resp.headers();
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Some(ObjectInfo {
            size: get("content-length").and_then(|s| s.parse().ok()).unwrap_or(0),
            etag: get("etag").unwrap_or_default().trim_matches('"').to_string(),
            slo: get("x-static-large-object").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            dlo_manifest: get("x-object-manifest"),
        }))
    }

    /// DELETEs an object; false when it was not there.
    pub(crate) async fn delete(&self, container: &str, object: &str, query: &str) -> Result<bool, SwiftError> {
        let op = format!("DELETE {container}/{object}");
        Ok(unless_404(self.send_retrying(&op, Method::DELETE, container, Some(object), query, |r| r).await)?.is_some())
    }

    /// PUTs a small object from memory (manifests, empty objects), with retries.
    /// Returns the response (its ETag verified against `etag` when given).
    pub(crate) async fn put_small(
        &self,
        op: &str,
        container: &str,
        object: &str,
        query: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<Response, SwiftError> {
        self.send_retrying(op, Method::PUT, container, Some(object), query, |mut r| {
            for (k, v) in headers {
                r = r.header(*k, v);
            }
            r.header("Content-Length", body.len().to_string()).body(body.clone())
        })
        .await
    }

    /// Server-side copy (`PUT` + `X-Copy-From`) of `from` = (container, object)
    /// (bytes `0..len` only when `len` is given: a `Range`) to `container/object`:
    /// the bytes move inside the cluster, not over the link. Fails unless the new
    /// object's ETag is `want` (the MD5 of what it must hold).
    pub(crate) async fn copy(
        &self,
        op: &str,
        container: &str,
        object: &str,
        from: (&str, &str),
        len: Option<u64>,
        want: &str,
    ) -> Result<(), SwiftError> {
        let range = len.map(|n| (0, n.saturating_sub(1)));
        self.copy_bytes(op, container, object, from, range, want).await
    }

    /// [`Swift::copy`] of bytes `first..=last` of `from`.
    pub(crate) async fn copy_range(
        &self,
        op: &str,
        container: &str,
        object: &str,
        from: (&str, &str),
        range: (u64, u64),
        want: &str,
    ) -> Result<(), SwiftError> {
        self.copy_bytes(op, container, object, from, Some(range), want).await
    }

    async fn copy_bytes(
        &self,
        op: &str,
        container: &str,
        object: &str,
        from: (&str, &str),
        range: Option<(u64, u64)>,
        want: &str,
    ) -> Result<(), SwiftError> {
        let mut headers = vec![("X-Copy-From", copy_source_value(from.0, from.1))];
        if let Some((a, b)) = range {
            headers.push(("Range", format!("bytes={a}-{b}")));
        }
        let r = self.put_small(op, container, object, "", vec![], &headers).await?;
        let got = r.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().trim_matches('"');
        if !got.eq_ignore_ascii_case(want) {
            return Err(SwiftError::local(
                op,
                format!("the copy has ETag {got}, expected {want}"),
                crate::retry::Class::Fatal,
            ));
        }
        Ok(())
    }

    /// PUTs an SLO manifest with `heartbeat=on` and returns its real outcome. `etag`
    /// (the ETag the object must get) goes in the `Etag` header where the store
    /// takes one (Ceph RGW refuses any with 422). A 422 is never retried: a manifest
    /// the store refuses once it refuses again.
    pub(crate) async fn put_slo(
        &self,
        container: &str,
        object: &str,
        body: Vec<u8>,
        etag: Option<&str>,
    ) -> Result<manifest::HeartbeatResult, SwiftError> {
        let op = format!("PUT SLO manifest {container}/{object}");
        // The answer streams in while Swift checks the segments (heartbeat): a link that
        // drops while it is read fails the whole PUT, which is sent again (it is
        // idempotent), like any transport failure.
        // One retry loop around sending and reading the answer (not around a call
        // that retries on its own: the budgets would stack).
        crate::retry::retry(self.policy(), &op, |_| async {
            let query = "multipart-manifest=put&heartbeat=on";
            let resp = self
                .send(&op, Method::PUT, container, Some(object), query, |r| {
                    let r = match etag {
                        Some(e) => r.header("Etag", e),
                        None => r,
                    };
                    r.header("Accept", "application/json")
                        .header("Content-Length", body.len().to_string())
                        .body(body.clone())
                })
                .await
                .map_err(|mut e| {
                    if e.status == Some(422) {
                        e.class = Class::Fatal;
                    }
                    e
                })?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| SwiftError::transport(&op, &e))?;
            if status == 202 {
                let r = manifest::parse_heartbeat(&text).ok_or_else(|| {
                    SwiftError::local(&op, format!("unreadable heartbeat body: {text:.200}"), Class::Transient)
                })?;
                return Ok(r);
            }
            // A server without heartbeat support answers 201 directly.
            Ok(manifest::HeartbeatResult {
                status,
                etag: headers.get("etag").and_then(|v| v.to_str().ok()).map(|s| s.trim_matches('"').to_string()),
                errors: vec![],
                body: text,
            })
        })
        .await
    }

    /// PUTs one segment, once (the caller retries, and watches the body for stalls),
    /// and returns the ETag the server answered. With `md5`, it goes in the `ETag`
    /// header, so Swift stores nothing that does not match it (422), and the answer's
    /// ETag must be that MD5 too. Without (the MD5 is computed while the body is
    /// sent), the caller compares the answer with it.
    ///
    /// Reference: <https://docs.openstack.org/api-ref/object-store/#create-or-replace-object>
    pub(crate) async fn put_segment(
        &self,
        op: &str,
        container: &str,
        name: &str,
        md5: Option<&str>,
        len: u64,
        body: Body,
    ) -> Result<String, SwiftError> {
        let resp = self
            .send(op, Method::PUT, container, Some(name), "", |r| {
                let r = match md5 {
                    Some(m) => r.header("ETag", m),
                    None => r,
                };
                r.header("Content-Length", len.to_string())
                    .header("Content-Type", "application/octet-stream")
                    .body(body)
            })
            .await?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").trim_matches('"');
        match md5 {
            Some(m) if !etag.eq_ignore_ascii_case(m) => {
                let mut e =
                    SwiftError::from_response(op, 200, resp.headers(), &format!("server ETag {etag} ≠ local MD5 {m}"));
                e.class = Class::Transient;
                Err(e)
            }
            _ => Ok(etag.to_ascii_lowercase()),
        }
    }

    /// GETs an object (optionally with a query), for reading it back.
    pub(crate) async fn get(&self, container: &str, object: &str, query: &str) -> Result<Response, SwiftError> {
        let op = format!("GET {container}/{object}");
        self.send_retrying(&op, Method::GET, container, Some(object), query, |r| r).await
    }

    /// GETs an object's bytes from `from` on (`Range: bytes=FROM-`; all of it from 0).
    /// An SLO whose first segment in that range is not the one its manifest names
    /// answers 409 (Swift checks it before it answers).
    pub(crate) async fn get_from(&self, container: &str, object: &str, from: u64) -> Result<Response, SwiftError> {
        let op = match from {
            0 => format!("GET {container}/{object}"),
            _ => format!("GET {container}/{object} from byte {from}"),
        };
        let range = format!("bytes={from}-");
        self.send_retrying(&op, Method::GET, container, Some(object), "", |r| {
            if from > 0 { r.header(reqwest::header::RANGE, range.as_str()) } else { r }
        })
        .await
    }
}
