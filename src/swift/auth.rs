//! Authentication: Swift v1 (tempauth), Keystone v3 (password or application
//! credential), or a pre-authenticated token; and the token manager that refreshes
//! one token for all workers shortly before it expires, and once on a 401.
//!
//! Reference: <https://docs.openstack.org/api-ref/identity/v3/#password-authentication-with-scoped-authorization>

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::error::{SwiftError, trans_id};
use crate::retry::Class;

/// A secret string: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as a header value marked sensitive: the HTTP stack never prints
    /// it (its `Debug` shows `Sensitive`) and HTTP/2 never indexes it.
    pub fn header(&self, op: &str) -> Result<reqwest::header::HeaderValue, SwiftError> {
        let mut v = reqwest::header::HeaderValue::from_str(&self.0).map_err(|_| {
            SwiftError::local(op, "a credential or token holds characters a header cannot carry", Class::Fatal)
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who the user is in Keystone.
#[derive(Debug, Clone)]
pub enum KeystoneMethod {
    /// User + password, scoped to a project.
    Password {
        /// `OS_USER_ID`, or `OS_USERNAME` with `OS_USER_DOMAIN_NAME`/`_ID`.
        user: NameOrId,
        /// `OS_PASSWORD`.
        password: Secret,
        /// The project scope.
        project: NameOrId,
    },
    /// An application credential (already scoped).
    AppCredential {
        /// `OS_APPLICATION_CREDENTIAL_ID`.
        id: String,
        /// `OS_APPLICATION_CREDENTIAL_SECRET`.
        secret: Secret,
    },
}

/// An entity given by id, or by name within a domain (by name or id).
#[derive(Debug, Clone)]
pub enum NameOrId {
    /// By id.
    Id(String),
    /// By name, in a domain.
    Name {
        /// The name.
        name: String,
        /// The domain (by name or id); none for a domain itself.
        domain: Option<Box<NameOrId>>,
    },
}

impl NameOrId {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            NameOrId::Id(id) => json!({ "id": id }),
            NameOrId::Name { name, domain: None } => json!({ "name": name }),
            NameOrId::Name { name, domain: Some(d) } => json!({ "name": name, "domain": d.to_json() }),
        }
    }
    /// The name, when given by name.
    pub fn as_name(&self) -> Option<String> {
        match self {
            NameOrId::Name { name, .. } => Some(name.clone()),
            NameOrId::Id(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            NameOrId::Id(id) => id.clone(),
            NameOrId::Name { name, .. } => name.clone(),
        }
    }
}

/// Keystone v3 settings.
#[derive(Debug, Clone)]
pub struct Keystone {
    /// `OS_AUTH_URL` (with or without `/v3`).
    pub auth_url: String,
    /// How to authenticate.
    pub method: KeystoneMethod,
    /// `OS_REGION_NAME`: the catalog endpoint's region.
    pub region: Option<String>,
    /// `OS_INTERFACE`: public (default), internal or admin.
    pub interface: String,
    /// `OS_STORAGE_URL`: overrides the catalog's object-store endpoint.
    pub storage_url: Option<String>,
}

/// How to obtain a token.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Swift v1 auth (tempauth, swauth): `ST_AUTH`, `ST_USER`, `ST_KEY`.
    V1 {
        /// `ST_AUTH`.
        url: String,
        /// `ST_USER` (`account:user`).
        user: String,
        /// `ST_KEY`.
        key: Secret,
    },
    /// Keystone v3.
    Keystone(Keystone),
    /// `OS_STORAGE_URL` + `OS_AUTH_TOKEN`: used as given, cannot be refreshed.
    Token {
        /// The storage URL.
        storage_url: String,
        /// The token.
        token: Secret,
    },
}

impl Credentials {
    /// A description without secrets, for logs and the journal.
    pub fn describe(&self) -> String {
        match self {
            Credentials::V1 { url, user, .. } => format!("v1 auth {user} at {url}"),
            Credentials::Keystone(k) => {
                let who = match &k.method {
                    KeystoneMethod::Password { user, project, .. } => {
                        format!("user {} project {}", user.describe(), project.describe())
                    }
                    KeystoneMethod::AppCredential { id, .. } => format!("application credential {id}"),
                };
                format!("keystone {who} at {}", k.auth_url)
            }
            Credentials::Token { storage_url, .. } => format!("pre-authenticated token for {storage_url}"),
        }
    }
}

/// A token and the storage URL it is good for.
#[derive(Debug)]
pub struct Token {
    /// The token (`X-Auth-Token`).
    pub value: Secret,
    /// The account's storage URL.
    pub storage_url: String,
    /// When it was obtained.
    pub issued: Instant,
    /// When it expires, when known.
    pub expires: Option<Instant>,
    /// Keystone's service catalog (not secret), for the image service's endpoint.
    pub catalog: Option<Value>,
}

impl Token {
    /// True when the token should be replaced before use: past 80% of its life,
    /// or within a minute of its end.
    fn stale(&self, now: Instant) -> bool {
        match self.expires {
            None => false,
            Some(exp) => {
                let life = exp.saturating_duration_since(self.issued);
                let margin = (life / 5).min(Duration::from_secs(60));
                now + margin >= exp
            }
        }
    }
}

/// Hands out a valid token to every worker; one login at a time serves them all.
pub struct Auth {
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
    pub fn new(creds: Credentials, http: reqwest::Client) -> Self {
        Auth { creds, http, current: Mutex::new(None) }
    }

    /// The credentials' description.
    pub fn describe(&self) -> String {
        self.creds.describe()
    }

    /// A token valid for at least a little while; logs in if needed. Concurrent
    /// callers wait for the one login in progress instead of starting their own.
    pub async fn token(&self) -> Result<Arc<Token>, SwiftError> {
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
    pub async fn invalidate(&self, rejected: &Arc<Token>) {
        let mut cur = self.current.lock().await;
        if cur.as_ref().is_some_and(|t| Arc::ptr_eq(t, rejected)) {
            *cur = None;
        }
    }

    /// The URL of another service (`image`) from the Keystone catalog, with the
    /// interface and region the object store was chosen with.
    pub async fn service_url(&self, kind: &str) -> Result<String, String> {
        let t = self.token().await.map_err(|e| e.to_string())?;
        let (Some(catalog), Credentials::Keystone(k)) = (&t.catalog, &self.creds) else {
            return Err(format!("no service catalog: the {kind} endpoint is only found with Keystone credentials"));
        };
        catalog_endpoint(catalog, kind, &k.interface, k.region.as_deref())
    }

    /// The Keystone credentials, when the job logs in with Keystone.
    pub fn keystone(&self) -> Option<&Keystone> {
        match &self.creds {
            Credentials::Keystone(k) => Some(k),
            _ => None,
        }
    }

    /// True when a rejected token can be replaced by logging in again.
    pub fn can_refresh(&self) -> bool {
        !matches!(self.creds, Credentials::Token { .. })
    }

    async fn login(&self) -> Result<Token, SwiftError> {
        match &self.creds {
            Credentials::V1 { url, user, key } => self.login_v1(url, user, key).await,
            Credentials::Keystone(k) => self.login_keystone(k).await,
            Credentials::Token { storage_url, token } => Ok(Token {
                value: token.clone(),
                storage_url: storage_url.trim_end_matches('/').to_string(),
                issued: Instant::now(),
                expires: None,
                catalog: None,
            }),
        }
    }

    async fn login_v1(&self, url: &str, user: &str, key: &Secret) -> Result<Token, SwiftError> {
        let op = format!("v1 login of {user} at {url}");
        let issued = Instant::now();
        let resp = self
            .http
            .get(url)
            .header("X-Auth-User", user)
            .header("X-Auth-Key", key.header(&op)?)
            .send()
            .await
            .map_err(|e| SwiftError::transport(&op, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if !(200..300).contains(&status) {
            let body = resp.text().await.unwrap_or_default();
            return Err(login_error(&op, status, &headers, &body, "Swift auth (v1)"));
        }
        let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (Some(token), Some(storage_url)) = (get("x-auth-token"), get("x-storage-url")) else {
            return Err(not_the_service(
                &op,
                &format!("HTTP {status} without X-Auth-Token and X-Storage-Url"),
                "Swift auth (v1)",
            ));
        };
        // A lifetime too large for the clock (`1e30`) is taken as "no expiry known".
        let expires = get("x-auth-token-expires")
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .and_then(|d| issued.checked_add(d));
        Ok(Token {
            value: Secret(token),
            storage_url: storage_url.trim_end_matches('/').to_string(),
            issued,
            expires,
            catalog: None,
        })
    }

    async fn login_keystone(&self, k: &Keystone) -> Result<Token, SwiftError> {
        let base = k.auth_url.trim_end_matches('/');
        let url = if base.ends_with("/v3") { format!("{base}/auth/tokens") } else { format!("{base}/v3/auth/tokens") };
        let op = format!("keystone login at {url}");
        let body = match &k.method {
            KeystoneMethod::Password { user, password, project } => {
                let mut u = user.to_json();
                u["password"] = json!(password.expose());
                json!({"auth": {
                    "identity": {"methods": ["password"], "password": {"user": u}},
                    "scope": {"project": project.to_json()}
                }})
            }
            KeystoneMethod::AppCredential { id, secret } => json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": id, "secret": secret.expose()}
            }}}),
        };
        let issued = Instant::now();
        let resp = self
            .http
            .post(&url)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| SwiftError::transport(&op, &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(|e| SwiftError::transport(&op, &e))?;
        if status != 201 && status != 200 {
            return Err(login_error(&op, status, &headers, &text, "Keystone v3"));
        }
        let token = headers
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| not_the_service(&op, "without X-Subject-Token", "Keystone v3"))?
            .to_string();
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| SwiftError::local(&op, format!("unreadable token body: {e}"), Class::Fatal))?;
        let t = &v["token"];
        // Token life from the server's own clock (issued_at → expires_at): immune to skew.
        let life =
            match (t["issued_at"].as_str().and_then(parse_rfc3339), t["expires_at"].as_str().and_then(parse_rfc3339)) {
                (Some(a), Some(b)) if b > a => Duration::try_from(b.duration_since(a)).ok(),
                _ => None,
            };
        let storage_url = match &k.storage_url {
            // A K5 profile's template: the project id comes with the token.
            Some(u) if u.contains("$(project_id)s") => match t["project"]["id"].as_str() {
                Some(p) => u.replace("$(project_id)s", p),
                None => {
                    return Err(SwiftError::local(&op, "the token is not scoped to a project", Class::Fatal));
                }
            },
            Some(u) => u.clone(),
            None => catalog_endpoint(&t["catalog"], "object-store", &k.interface, k.region.as_deref())
                .map_err(|d| SwiftError::local(&op, d, Class::Fatal))?,
        };
        Ok(Token {
            value: Secret(token),
            storage_url: storage_url.trim_end_matches('/').to_string(),
            issued,
            expires: life.map(|l| issued + l),
            catalog: Some(t["catalog"].clone()),
        })
    }
}

fn login_error(op: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &str, service: &str) -> SwiftError {
    let mut e = SwiftError::from_response(op, status, headers, body);
    if status == 401 || status == 403 {
        // Wrong credentials at login: retrying cannot help.
        e.class = Class::Fatal;
        e.status = Some(401);
        e.detail = "the credentials were rejected".into();
        e.trans_id = e.trans_id.or_else(|| trans_id(headers));
    } else if status < 500 && status != 429 && status != 408 {
        // A server that answers, but not as this service would (Glance's 300 with its
        // version list, a 404 page): the URL is wrong, not the network.
        e = not_the_service(op, &format!("HTTP {status}"), service);
    }
    e
}

/// The answer at a login URL is not that of `service`.
fn not_the_service(op: &str, seen: &str, service: &str) -> SwiftError {
    SwiftError {
        origin: crate::swift::Origin::Endpoint,
        ..SwiftError::local(op, format!("this is not a {service} endpoint (it answered {seen})"), Class::Fatal)
    }
}

/// Finds the URL of a service in a Keystone v3 catalog.
pub fn catalog_endpoint(catalog: &Value, kind: &str, interface: &str, region: Option<&str>) -> Result<String, String> {
    let iface = interface.trim_end_matches("URL");
    let mut seen = vec![];
    for svc in catalog.as_array().into_iter().flatten() {
        if svc["type"].as_str() != Some(kind) {
            continue;
        }
        for ep in svc["endpoints"].as_array().into_iter().flatten() {
            let ep_region = ep["region_id"].as_str().or(ep["region"].as_str()).unwrap_or("");
            let ep_iface = ep["interface"].as_str().unwrap_or("");
            seen.push(format!("{ep_iface}/{ep_region}"));
            if ep_iface == iface
                && region.is_none_or(|r| r == ep_region)
                && let Some(u) = ep["url"].as_str()
            {
                return Ok(u.to_string());
            }
        }
    }
    Err(format!(
        "the catalog has no {kind} endpoint for interface {iface}{} (found: {})",
        region.map(|r| format!(" in region {r}")).unwrap_or_default(),
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    ))
}

/// Parses an RFC 3339 timestamp (Keystone's `issued_at`/`expires_at`); `None` for
/// anything else, never a panic.
pub fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    s.trim().parse::<jiff::Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let secs = |s: &str| parse_rfc3339(s).map(|t| t.as_millisecond() as f64 / 1000.0);
        assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(secs("2026-11-25T12:00:00.500000Z"), Some(1_795_608_000.5));
        assert_eq!(secs("2026-11-25T13:00:00+01:00"), Some(1_795_608_000.0));
        assert_eq!(secs("yesterday"), None);
        // Once a panic: a non-ASCII offset (Arabic-Indic digits) from a server.
        assert_eq!(secs("2026-12-01T06:00:00+\u{0669}\u{0669}:00"), None);
        assert_eq!(secs("2026-12-01T06:00:00\u{e9}"), None);
        assert_eq!(secs(""), None);
    }

    #[test]
    fn catalog() {
        let c = json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "R1", "url": "http://k"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region_id": "R1", "url": "http://internal"},
                {"interface": "public", "region_id": "R1", "url": "http://r1"},
                {"interface": "public", "region_id": "R2", "url": "http://r2"}]}
        ]);
        assert_eq!(catalog_endpoint(&c, "object-store", "public", Some("R2")).unwrap(), "http://r2");
        assert_eq!(catalog_endpoint(&c, "object-store", "internalURL", None).unwrap(), "http://internal");
        let e = catalog_endpoint(&c, "object-store", "public", Some("R9")).unwrap_err();
        assert!(e.contains("region R9") && e.contains("public/R1"), "{e}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::V1 { url: "u".into(), user: "a:b".into(), key: Secret::new("hunter2") };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.describe().contains("hunter2"));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_secret_header_is_marked_sensitive_and_never_printed() {
        let v = Secret::new("tok-123-secret").header("t").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("tok-123"), "{v:?}");
        assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
        assert!(Secret::new("bad\nvalue").header("t").is_err());
    }
}
