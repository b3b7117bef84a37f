//! The Swift client: the only module that sends storage requests (through reqwest).
//! It knows nothing of jobs or the journal.
//!
//! Reference: <https://docs.openstack.org/api-ref/object-store/>

pub mod auth;
pub mod creds;
pub mod error;
pub mod manifest;

use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;

pub use auth::{Auth, Credentials, Secret};
pub use creds::TlsSettings;
pub use error::{Origin, SwiftError};

use crate::error::{Error, Result};
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

/// HTTP client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Extra CA certificates, skip verification.
    pub tls: TlsSettings,
    /// Retry policy for every idempotent request.
    pub policy: Policy,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Builds the HTTP client: TLS with the system's roots plus `cacert`, rustls.
pub fn http_client(opts: &ClientOptions) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("k5up/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        // A server that stops answering mid-response (or never answers a login) is a
        // network fault, not a wait for ever; segment bodies have their own watchdog.
        .read_timeout(Duration::from_secs(120))
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(50));
    if let Some(p) = &opts.tls.cacert {
        let pem = std::fs::read(p).map_err(|e| Error::io(format!("cannot read CA bundle {}", p.display()), e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::input(format!("{}: not a PEM certificate bundle: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(Error::input(format!("{} holds no certificate", p.display()))
                .hint("--cacert (or OS_CACERT) takes a PEM file with the CA's certificate (BEGIN CERTIFICATE)"));
        }
        b = b.tls_certs_merge(certs);
    }
    if opts.tls.insecure {
        tracing::warn!(
            "TLS certificate verification is OFF (--insecure): anyone on the path can read and alter this upload"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))
}

/// A Swift account, reached with one token manager.
#[derive(Debug, Clone)]
pub struct Swift {
    http: reqwest::Client,
    auth: Arc<Auth>,
    policy: Policy,
}

impl Swift {
    /// A client for `creds`.
    pub fn new(creds: Credentials, opts: &ClientOptions) -> Result<Self> {
        let http = http_client(opts)?;
        Ok(Swift { auth: Arc::new(Auth::new(creds, http.clone())), http, policy: opts.policy.clone() })
    }

    /// The token manager.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The same client (sharing its token) with a shorter, quiet retry budget.
    pub fn with_retry_for(&self, retry_for: Duration) -> Swift {
        let mut s = self.clone();
        s.policy.retry_for = s.policy.retry_for.min(retry_for);
        s.policy.quiet = true;
        s
    }

    /// The retry policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Logs in (with retries) and returns the storage URL.
    pub async fn storage_url(&self) -> Result<String, SwiftError> {
        let auth = self.auth.clone();
        retry::retry(&self.policy, "login", |_| {
            let auth = auth.clone();
            async move { auth.token().await.map(|t| t.storage_url.clone()) }
        })
        .await
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
        let base = self.auth.token().await?.storage_url.clone();
        let mut url = match object {
            Some(o) => format!("{base}/{}", object_path(container, o)),
            None => format!("{base}/{}", enc_container(container)),
        };
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        self.send_url(op, method, &url, build).await
    }

    /// Sends one request to the account itself (its storage URL).
    pub async fn send_account(
        &self,
        op: &str,
        method: Method,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(&self.policy, op, |_| async {
            let url = self.auth.token().await?.storage_url.clone();
            self.send_url(op, method.clone(), &url, &build).await
        })
        .await
    }

    /// Sends one request to any URL (Glance, vmimport) with the current token; the
    /// same error classes and 401 handling as [`Swift::send`].
    pub async fn send_url(
        &self,
        op: &str,
        method: Method,
        url: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        let token = self.auth.token().await?;
        let started = std::time::Instant::now();
        tracing::trace!("→ {method} {url} ({op})");
        let req = self.http.request(method.clone(), url).header("X-Auth-Token", token.value.header(op)?);
        let resp = build(req).send().await.map_err(|e| {
            let e = SwiftError::transport(op, &e);
            tracing::trace!("✗ {method} {url}: {} after {} ms", e.detail, started.elapsed().as_millis());
            e
        })?;
        tracing::trace!(
            "← {method} {url}: HTTP {} in {} ms (X-Trans-Id: {})",
            resp.status().as_u16(),
            started.elapsed().as_millis(),
            error::trans_id(resp.headers()).unwrap_or_default()
        );
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        let mut e = SwiftError::from_response(op, status, &headers, &body);
        if status == 401 {
            if self.auth.can_refresh() {
                self.auth.invalidate(&token).await;
            } else {
                e.class = Class::Fatal;
            }
        }
        Err(e)
    }

    /// [`Swift::send_url`] with retries (idempotent requests).
    pub async fn send_url_retrying(
        &self,
        op: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(&self.policy, op, |_| self.send_url(op, method.clone(), url, &build)).await
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
        retry::retry(&self.policy, op, |_| self.send(op, method.clone(), container, object, query, &build)).await
    }

    /// The server's limits from `GET /info`; Swift's documented defaults when `/info`
    /// is disabled or unreadable.
    pub async fn limits(&self) -> Result<Limits, SwiftError> {
        let storage = self.storage_url().await?;
        let root = match storage.rfind("/v1/").or_else(|| storage.strip_suffix("/v1").map(|s| s.len())) {
            Some(i) => &storage[..i],
            None => storage.as_str(),
        };
        let url = format!("{root}/info");
        let op = format!("GET {url}");
        let resp = retry::retry(&self.policy, &op, |_| async {
            self.http.get(&url).send().await.map_err(|e| SwiftError::transport(&op, &e))
        })
        .await?;
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

    /// PUTs an SLO manifest with `heartbeat=on` and returns its real outcome.
    pub async fn put_slo(
        &self,
        container: &str,
        object: &str,
        body: Vec<u8>,
        etag: &str,
    ) -> Result<manifest::HeartbeatResult, SwiftError> {
        let op = format!("PUT SLO manifest {container}/{object}");
        let resp = self
            .put_small(
                &op,
                container,
                object,
                "multipart-manifest=put&heartbeat=on",
                body,
                &[("Accept", "application/json".into()), ("Etag", etag.to_string())],
            )
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
    }

    /// GETs an object (optionally with a query), for reading it back.
    pub async fn get(&self, container: &str, object: &str, query: &str) -> Result<Response, SwiftError> {
        let op = format!("GET {container}/{object}");
        self.send_retrying(&op, Method::GET, container, Some(object), query, |r| r).await
    }
}
