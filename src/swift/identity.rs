//! Who the user is (Swift v1, Keystone v3 password or application credential, or a
//! pre-authenticated token), and what a token says (storage URL, expiry, scope).

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::error::SwiftError;
use super::secret::Secret;

/// Why the token does not tell what was asked of it (a service's URL, the scope).
#[derive(Debug)]
pub(crate) enum Unavailable {
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
pub(crate) enum KeystoneMethod {
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
pub(crate) enum NameOrId {
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
    pub(crate) fn as_name(&self) -> Option<String> {
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
pub(crate) struct Keystone {
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
pub(crate) enum Credentials {
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
    pub(crate) fn auth_setting(&self) -> Option<&'static str> {
        match self {
            Credentials::V1 { .. } => Some("ST_AUTH"),
            Credentials::Keystone(_) => Some("OS_AUTH_URL (or auth_url in clouds.yaml)"),
            Credentials::Token { .. } => None,
        }
    }

    /// Where the storage URL comes from, for hints.
    pub(crate) fn storage_setting(&self) -> &'static str {
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
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct Token {
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
pub(crate) struct Scope {
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
    pub(super) fn stale(&self, now: Instant) -> bool {
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
