//! The Swift client: the only module that sends storage requests (through reqwest).
//! It knows nothing of jobs or the journal.
//!
//! Reference: <https://docs.openstack.org/api-ref/object-store/>

pub mod auth;
pub mod creds;
pub mod dns;
pub mod error;
mod login;
pub mod manifest;
pub mod secret;
pub mod session;
pub mod url;

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;

pub use auth::{Auth, Credentials};
pub use creds::TlsSettings;
pub use error::{Origin, SwiftError};
pub use login::{catalog_endpoint, parse_rfc3339};
pub use reqwest::Body;
pub use secret::Secret;
pub use session::{ClientOptions, Session, http_client};

use crate::error::Result;
use crate::plan::{Limits, SloLimits};
use crate::retry::{self, Class, Policy};

/// Characters left as they are in a URL path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
/// In object names `/` stays too.
const OBJECT: &AsciiSet = &SEGMENT.remove(b'/');

/// Percent-encodes a container name for a URL path.
pub fn enc_container(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Percent-encodes an object name (keeping `/`) for a query value or `X-Object-Manifest`,
/// never for a URL path (see [`object_path`]).
pub fn enc_object(s: &str) -> String {
    utf8_percent_encode(s, OBJECT).to_string()
}

/// The value of `X-Object-Manifest` for segments under `prefix` in `container`. Swift
/// refuses a raw value whose prefix starts with `/` or that holds `?` or `&`, and
/// decodes it before use: every `/` of the prefix is encoded.
pub fn dlo_manifest_value(container: &str, prefix: &str) -> String {
    format!("{}/{}", enc_container(container), enc_container(prefix))
}

/// The value of `X-Copy-From` for `container/object`: Swift decodes it, then splits
/// the container off at the first `/`, so every `/` of the object is encoded too.
pub fn copy_source_value(container: &str, object: &str) -> String {
    format!("{}/{}", enc_container(container), enc_container(object))
}

/// The URL path of an object below the storage URL: `<container>%2F<object>`, every
/// `/` encoded. A name is data, never a path to resolve: URL parsers (reqwest's
/// included) and the HTTP clients of Glance remove `.` and `..` path segments, even
/// percent-encoded ones, so `a/../b` would reach another object or another container.
/// As one path segment with `%2F` inside, no part of it can be a dot segment; Swift
/// decodes the path before splitting it, so it sees exactly `<container>/<object>`.
pub fn object_path(container: &str, object: &str) -> String {
    format!("{}%2F{}", enc_container(container), enc_container(object))
}

/// One object in a container listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListEntry {
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

/// What a HEAD says of an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Content-Length.
    pub size: u64,
    /// ETag, unquoted.
    pub etag: String,
    /// `X-Static-Large-Object: True`.
    pub slo: bool,
    /// `X-Object-Manifest`, for a DLO.
    pub dlo_manifest: Option<String>,
}

/// A Swift account: the storage operations, sent through one [`Session`].
#[derive(Debug, Clone)]
pub struct Swift {
    session: Session,
}

impl Swift {
    /// A client for `creds`.
    pub fn new(creds: Credentials, opts: &ClientOptions) -> Result<Self> {
        Ok(Swift { session: Session::new(creds, opts)? })
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
        Swift { session: self.session.with_retry_for(retry_for) }
    }

    /// The same client (sharing its token) for the first contact of a new job: a
    /// host that does not resolve, a refused connection or a refused TLS handshake
    /// fail at once (a wrong URL, most likely); other failures are retried as usual,
    /// and said on stderr.
    pub fn first_contact(&self) -> Swift {
        Swift { session: self.session.first_contact() }
    }

    /// The retry policy.
    pub fn policy(&self) -> &Policy {
        self.session.policy()
    }

    /// Logs in (with retries) and returns the storage URL.
    pub async fn storage_url(&self) -> Result<String, SwiftError> {
        self.session.storage_url().await
    }

    /// Sends one request to `container[/object][?query]` with the current token.
    /// A 401 drops the token (the next call logs in again) and is classed `Reauth`.
    pub async fn send(
        &self,
        op: &str,
        method: Method,
        container: &str,
        object: Option<&str>,
        query: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        let base = self.auth().token().await?.storage_url.clone();
        let mut url = match object {
            Some(o) => format!("{base}/{}", object_path(container, o)),
            None => format!("{base}/{}", enc_container(container)),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        self.session.send_url(op, method, &url, build).await
    }

    /// Sends one request to the account itself (its storage URL).
    pub async fn send_account(
        &self,
        op: &str,
        method: Method,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(self.policy(), op, |_| async {
            let url = self.auth().token().await?.storage_url.clone();
            self.session.send_url(op, method.clone(), &url, &build).await
        })
        .await
    }

    /// [`Swift::send`] with retries, for idempotent requests without a streamed body.
    async fn send_retrying(
        &self,
        op: &str,
        method: Method,
        container: &str,
        object: Option<&str>,
        query: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(self.policy(), op, |_| self.send(op, method.clone(), container, object, query, &build)).await
    }

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

    /// Creates `container` if it does not exist.
    pub async fn ensure_container(&self, container: &str) -> Result<(), SwiftError> {
        let op = format!("HEAD container {container}");
        match self.send_retrying(&op, Method::HEAD, container, None, "", |r| r).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status == Some(404) => {}
            Err(e) => return Err(e),
        }
        let op = format!("create container {container}");
        self.send_retrying(&op, Method::PUT, container, None, "", |r| r.header("Content-Length", "0")).await?;
        Ok(())
    }

    /// How `container` keeps overwritten objects, if it does: the versioning header
    /// it carries (`X-History-Location`, `X-Versions-Location`, or
    /// `X-Versions-Enabled: true`) and its value. Old versions of a large object
    /// kept there are manifests that name the old segments. `None`: no versioning,
    /// or no such container.
    pub async fn versioning(&self, container: &str) -> Result<Option<(String, String)>, SwiftError> {
        let op = format!("HEAD container {container}");
        let resp = match self.send_retrying(&op, Method::HEAD, container, None, "", |r| r).await {
            Ok(r) => r,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
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

    /// Lists the objects of `container` whose names start with `prefix`, all pages.
    /// A missing container lists as empty.
    pub async fn list(&self, container: &str, prefix: &str) -> Result<Vec<ListEntry>, SwiftError> {
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

    /// HEADs an object; `None` when it does not exist.
    pub async fn head(&self, container: &str, object: &str) -> Result<Option<ObjectInfo>, SwiftError> {
        let op = format!("HEAD {container}/{object}");
        let resp = match self.send_retrying(&op, Method::HEAD, container, Some(object), "", |r| r).await {
            Ok(r) => r,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
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
    pub async fn delete(&self, container: &str, object: &str, query: &str) -> Result<bool, SwiftError> {
        let op = format!("DELETE {container}/{object}");
        match self.send_retrying(&op, Method::DELETE, container, Some(object), query, |r| r).await {
            Ok(_) => Ok(true),
            Err(e) if e.status == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUTs a small object from memory (manifests, empty objects), with retries.
    /// Returns the response (its ETag verified against `etag` when given).
    pub async fn put_small(
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
    pub async fn copy(
        &self,
        op: &str,
        container: &str,
        object: &str,
        from: (&str, &str),
        len: Option<u64>,
        want: &str,
    ) -> Result<(), SwiftError> {
        let mut headers = vec![("X-Copy-From", copy_source_value(from.0, from.1))];
        if let Some(n) = len {
            headers.push(("Range", format!("bytes=0-{}", n.saturating_sub(1))));
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

    /// PUTs an SLO manifest with `heartbeat=on` and returns its real outcome.
    pub async fn put_slo(
        &self,
        container: &str,
        object: &str,
        body: Vec<u8>,
        etag: &str,
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
                    r.header("Accept", "application/json")
                        .header("Etag", etag)
                        .header("Content-Length", body.len().to_string())
                        .body(body.clone())
                })
                .await?;
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

    /// PUTs one segment, once (the caller retries, and watches the body for stalls):
    /// `md5` goes in the `ETag` header, so Swift stores nothing that does not match
    /// it (422), and the answer's ETag must be that MD5 too.
    ///
    /// Reference: <https://docs.openstack.org/api-ref/object-store/#create-or-replace-object>
    pub async fn put_segment(
        &self,
        op: &str,
        container: &str,
        name: &str,
        md5: &str,
        len: u64,
        body: Body,
    ) -> Result<(), SwiftError> {
        let resp = self
            .send(op, Method::PUT, container, Some(name), "", |r| {
                r.header("ETag", md5)
                    .header("Content-Length", len.to_string())
                    .header("Content-Type", "application/octet-stream")
                    .body(body)
            })
            .await?;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or("").trim_matches('"');
        if etag.eq_ignore_ascii_case(md5) {
            return Ok(());
        }
        let mut e =
            SwiftError::from_response(op, 200, resp.headers(), &format!("server ETag {etag} ≠ local MD5 {md5}"));
        e.class = Class::Transient;
        Err(e)
    }

    /// One HEAD of a container, no retry: is the server reachable again?
    pub async fn probe(&self, container: &str) -> Result<(), SwiftError> {
        let op = format!("HEAD {container} (is the link back?)");
        self.send(&op, Method::HEAD, container, None, "", |r| r).await.map(|_| ())
    }

    /// The account's metadata headers (`X-Account-Meta-*`), lower-case names.
    pub async fn account_meta(&self) -> Result<Vec<(String, String)>, SwiftError> {
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
    pub async fn set_account_secret(&self, name: &str, value: &Secret) -> Result<(), SwiftError> {
        let op = format!("POST the account (set X-Account-Meta-{name})");
        let v = value.header(&op)?;
        let header = format!("X-Account-Meta-{name}");
        self.send_account(&op, Method::POST, |r| r.header(header.as_str(), v.clone())).await.map(|_| ())
    }

    /// GETs an object (optionally with a query), for reading it back.
    pub async fn get(&self, container: &str, object: &str, query: &str) -> Result<Response, SwiftError> {
        let op = format!("GET {container}/{object}");
        self.send_retrying(&op, Method::GET, container, Some(object), query, |r| r).await
    }

    /// GETs an object's bytes from `from` on (`Range: bytes=FROM-`; all of it from 0).
    /// An SLO whose first segment in that range is not the one its manifest names
    /// answers 409 (Swift checks it before it answers).
    pub async fn get_from(&self, container: &str, object: &str, from: u64) -> Result<Response, SwiftError> {
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
