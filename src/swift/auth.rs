//! Who the user is (Swift v1, Keystone v3 password or application credential, or a
//! pre-authenticated token), and the token manager that refreshes one token for all
//! workers shortly before it expires, and once on a 401. Logging in is in `login`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::error::SwiftError;
use super::login::catalog_endpoint;
pub use super::secret::Secret;

/// Why the token does not tell what was asked of it (a service's URL, the scope).
#[derive(Debug)]
pub enum Unavailable {
    /// No token: the login failed (its status and X-Trans-Id kept).
    Login(SwiftError),
    /// The token does not hold it (no catalog, no such service, not scoped).
    Missing(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Login(e) => fmt::Display::fmt(e, f),
            Unavailable::Missing(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unavailable::Login(e) => Some(e),
            Unavailable::Missing(_) => None,
        }
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
    /// The setting that names the login URL, for hints (none for a ready token).
    pub fn auth_setting(&self) -> Option<&'static str> {
        match self {
            Credentials::V1 { .. } => Some("ST_AUTH"),
            Credentials::Keystone(_) => Some("OS_AUTH_URL (or auth_url in clouds.yaml)"),
            Credentials::Token { .. } => None,
        }
    }

    /// Where the storage URL comes from, for hints.
    pub fn storage_setting(&self) -> &'static str {
        match self {
            Credentials::Token { .. } => "OS_STORAGE_URL",
            Credentials::Keystone(k) => match k.storage_url.as_deref() {
                Some(u) if u.contains("$(project_id)s") => "the object store of the --k5-region profile",
                Some(_) => "OS_STORAGE_URL",
                None => {
                    "the object-store endpoint of the Keystone catalog (OS_INTERFACE, OS_REGION_NAME; OS_STORAGE_URL overrides it)"
                }
            },
            Credentials::V1 { .. } => {
                "the storage URL that ST_AUTH hands out (X-Storage-Url: the Swift proxy's configuration)"
            }
        }
    }

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
    /// Who the token speaks for (Keystone tokens only).
    pub scope: Option<Scope>,
}

/// The project and user a Keystone token is scoped to (ids and names, not secret).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// The project's id: the owner of the images it creates.
    pub project_id: String,
    /// The project's name.
    pub project_name: String,
    /// The user's domain id (the default domain of project names).
    pub user_domain_id: String,
    /// The user's domain name.
    pub user_domain_name: String,
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

    /// The credentials (their secrets stay wrapped).
    pub fn credentials(&self) -> &Credentials {
        &self.creds
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
    pub async fn service_url(&self, kind: &str) -> Result<String, Unavailable> {
        let t = self.token().await.map_err(Unavailable::Login)?;
        let (Some(catalog), Credentials::Keystone(k)) = (&t.catalog, &self.creds) else {
            return Err(Unavailable::Missing(format!(
                "no service catalog: the {kind} endpoint is only found with Keystone credentials"
            )));
        };
        catalog_endpoint(catalog, kind, &k.interface, k.region.as_deref()).map_err(Unavailable::Missing)
    }

    /// The project and user of the current token (Keystone only).
    pub async fn scope(&self) -> Result<Scope, Unavailable> {
        let t = self.token().await.map_err(Unavailable::Login)?;
        t.scope.clone().ok_or_else(|| {
            Unavailable::Missing(
                "these credentials are not Keystone credentials scoped to a project (sharing an image needs them)"
                    .into(),
            )
        })
    }

    /// Keystone's identity API (`…/v3`), when the job logs in with Keystone.
    pub fn identity_url(&self) -> Option<String> {
        let k = self.keystone()?;
        let base = k.auth_url.trim_end_matches('/');
        Some(if base.ends_with("/v3") { base.to_string() } else { format!("{base}/v3") })
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

    #[test]
    fn secrets_do_not_print() {
        let c = Credentials::V1 { url: "u".into(), user: "a:b".into(), key: Secret::new("hunter2") };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.describe().contains("hunter2"));
    }
}
