//! The authenticated HTTP session: one client (TLS settings, timeouts), one token
//! manager shared by every request, and the retry policy. The storage client
//! ([`super::Swift`]) and the image services (Glance, vmimport) all send through it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};

use super::auth::{Auth, Credentials};
use super::creds::TlsSettings;
use super::error::{self, SwiftError};
use crate::error::{Error, Result};
use crate::retry::{self, Class, Policy};

/// HTTP client settings.
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    /// Extra CA certificates, skip verification.
    pub tls: TlsSettings,
    /// Retry policy for every idempotent request.
    pub policy: Policy,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Builds the HTTP client: TLS with the system's roots plus `cacert`, rustls.
pub(crate) fn http_client(opts: &ClientOptions) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("k5up/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        // A server that stops answering mid-response (or never answers a login) is a
        // network fault, not a wait for ever; segment bodies have their own watchdog.
        .read_timeout(Duration::from_secs(120))
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(50))
        // A host name that does not resolve is an error of its own type (and a name
        // under `.invalid` is refused without asking the name server).
        .dns_resolver(super::dns::Resolver);
    if let Some(p) = &opts.tls.cacert {
        let pem = std::fs::read(p).map_err(|e| Error::io(format!("cannot read CA bundle {}", p.display()), e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::input(format!("{}: not a PEM certificate bundle: {e}", p.display())).caused_by(e))?;
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
    b.build().map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")).caused_by(e))
}

/// An authenticated session: HTTP client, token manager, retry policy.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    http: reqwest::Client,
    auth: Arc<Auth>,
    policy: Policy,
}

impl Session {
    /// A client for `creds`.
    pub(crate) fn new(creds: Credentials, opts: &ClientOptions) -> Result<Self> {
        let http = http_client(opts)?;
        Ok(Session { auth: Arc::new(Auth::new(creds, http.clone())), http, policy: opts.policy.clone() })
    }

    /// The token manager.
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The same client (sharing its token) with a shorter, quiet retry budget.
    pub(crate) fn with_retry_for(&self, retry_for: Duration) -> Session {
        let mut s = self.clone();
        s.policy.retry_for = s.policy.retry_for.min(retry_for);
        s.policy.quiet = true;
        s
    }

    /// The same client (sharing its token) for a first contact: see
    /// [`super::Swift::first_contact`].
    pub(crate) fn first_contact(&self) -> Session {
        let mut s = self.clone();
        s.policy.fail_unreachable = true;
        s
    }

    /// The retry policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Logs in (with retries) and returns the storage URL.
    pub(crate) async fn storage_url(&self) -> Result<String, SwiftError> {
        let auth = self.auth.clone();
        retry::retry(&self.policy, "login", |_| {
            let auth = auth.clone();
            async move { auth.token().await.map(|t| t.storage_url.clone()) }
        })
        .await
    }

    /// The HTTP client (for requests that need no token: `/info`).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request to any URL (Glance, vmimport) with the current token; the
    /// same error classes and 401 handling as [`super::Swift::send`].
    pub(crate) async fn send_url(
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

    /// `GET url` of a JSON API (Glance, Keystone) with retries; `None` for a 404.
    pub(crate) async fn get_json(&self, op: &str, url: &str) -> Result<Option<serde_json::Value>, SwiftError> {
        match self.send_url_retrying(op, Method::GET, url, |r| r.header("Accept", "application/json")).await {
            Ok(resp) => read_json(op, resp).await.map(Some),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Session::send_url`] with retries (idempotent requests).
    pub(crate) async fn send_url_retrying(
        &self,
        op: &str,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, SwiftError> {
        retry::retry(&self.policy, op, |_| self.send_url(op, method.clone(), url, &build)).await
    }
}

/// The JSON body of a successful answer; a body cut off or unreadable is a
/// transport error of `op` (retried like one).
pub(crate) async fn read_json(op: &str, resp: Response) -> Result<serde_json::Value, SwiftError> {
    resp.json().await.map_err(|e| SwiftError::transport(op, &e))
}
