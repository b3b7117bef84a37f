//! Credentials from the environment (OpenStack RC files, `ST_*`), or from
//! clouds.yaml (`OS_CLOUD`), in this order of precedence:
//! `OS_STORAGE_URL`+`OS_AUTH_TOKEN`, `OS_CLOUD`, `OS_AUTH_URL`, `ST_AUTH`.
//!
//! Reference: <https://docs.openstack.org/python-openstackclient/latest/configuration/index.html>

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::{Credentials, Keystone, KeystoneMethod, NameOrId};
use super::secret::Secret;
use crate::error::{Error, Result};

/// TLS settings that come with the credentials (`OS_CACERT`, clouds.yaml `cacert`/`verify`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsSettings {
    /// A PEM bundle of extra CA certificates.
    pub cacert: Option<PathBuf>,
    /// Skip certificate verification (loudly warned about).
    pub insecure: bool,
}

/// Reads credentials from `env` (normally the process environment).
pub(crate) fn from_env(env: &HashMap<String, String>) -> Result<(Credentials, TlsSettings)> {
    let get = |k: &str| env.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let mut tls = TlsSettings { cacert: get("OS_CACERT").map(PathBuf::from), insecure: false };
    if let (Some(url), Some(token)) = (get("OS_STORAGE_URL"), get("OS_AUTH_TOKEN")) {
        return Ok((Credentials::Token { storage_url: url, token: Secret::new(token) }, tls));
    }
    if let Some(cloud) = get("OS_CLOUD") {
        let (creds, ctls) = from_clouds_yaml(&cloud, env)?;
        if tls.cacert.is_none() {
            tls.cacert = ctls.cacert;
        }
        tls.insecure |= ctls.insecure;
        return Ok((creds, tls));
    }
    if let Some(auth_url) = get("OS_AUTH_URL") {
        let k = keystone_from(
            &auth_url,
            &|k: &str| get(&format!("OS_{}", k.to_ascii_uppercase())),
            get("OS_REGION_NAME"),
            get("OS_INTERFACE"),
            get("OS_STORAGE_URL"),
        )?;
        return Ok((Credentials::Keystone(k), tls));
    }
    if let Some(url) = get("ST_AUTH") {
        let user = get("ST_USER").ok_or_else(|| Error::input("ST_AUTH is set but ST_USER is not"))?;
        let key = get("ST_KEY").ok_or_else(|| Error::input("ST_AUTH is set but ST_KEY is not"))?;
        return Ok((Credentials::V1 { url, user, key: Secret::new(key) }, tls));
    }
    Err(Error::input("no credentials found")
        .hint("source an OpenStack RC file (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, ...), set OS_CLOUD for clouds.yaml, or set ST_AUTH/ST_USER/ST_KEY"))
}

/// Builds Keystone settings from auth fields looked up by their clouds.yaml name
/// (`username`, `project_name`, ...).
fn keystone_from(
    auth_url: &str,
    get: &dyn Fn(&str) -> Option<String>,
    region: Option<String>,
    interface: Option<String>,
    storage_url: Option<String>,
) -> Result<Keystone> {
    let method = if let Some(id) = get("application_credential_id") {
        let secret = get("application_credential_secret")
            .ok_or_else(|| Error::input("an application credential id is set but its secret is not"))?;
        KeystoneMethod::AppCredential { id, secret: Secret::new(secret) }
    } else {
        // A domain by id or name; the generic OS_DOMAIN_ID/NAME, then Keystone's `default`.
        let dom = |id_key: &str, name_key: &str| -> Box<NameOrId> {
            let by = |i: Option<String>, n: Option<String>| match (i, n) {
                (Some(id), _) => Some(NameOrId::Id(id)),
                (None, Some(name)) => Some(NameOrId::Name { name, domain: None }),
                _ => None,
            };
            Box::new(
                by(get(id_key), get(name_key))
                    .or_else(|| by(get("domain_id"), get("domain_name")))
                    .unwrap_or_else(|| NameOrId::Id("default".into())),
            )
        };
        let user = match get("user_id") {
            Some(id) => NameOrId::Id(id),
            None => NameOrId::Name {
                name: get("username").ok_or_else(|| Error::input("Keystone auth needs OS_USERNAME or OS_USER_ID"))?,
                domain: Some(dom("user_domain_id", "user_domain_name")),
            },
        };
        let project = match (
            get("project_id").or_else(|| get("tenant_id")),
            get("project_name").or_else(|| get("tenant_name")),
        ) {
            (Some(id), _) => NameOrId::Id(id),
            (None, Some(name)) => {
                NameOrId::Name { name, domain: Some(dom("project_domain_id", "project_domain_name")) }
            }
            (None, None) => {
                return Err(Error::input("Keystone auth needs a project: OS_PROJECT_ID or OS_PROJECT_NAME"));
            }
        };
        let password = get("password").ok_or_else(|| Error::input("Keystone auth needs OS_PASSWORD"))?;
        KeystoneMethod::Password { user, password: Secret::new(password), project }
    };
    Ok(Keystone {
        auth_url: auth_url.to_string(),
        method,
        region,
        interface: interface.unwrap_or_else(|| "public".into()),
        storage_url,
    })
}

#[derive(Debug, Deserialize, Default)]
struct CloudsFile {
    #[serde(default)]
    clouds: HashMap<String, Cloud>,
}

/// `Debug` names the auth keys but never shows their values (passwords,
/// application-credential secrets, tokens live there).
impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<&str> = self.auth.keys().map(String::as_str).collect();
        keys.sort_unstable();
        f.debug_struct("Cloud")
            .field("auth_keys", &keys)
            .field("region_name", &self.region_name)
            .field("interface", &self.interface)
            .field("cacert", &self.cacert)
            .field("verify", &self.verify)
            .finish()
    }
}

#[derive(Deserialize, Default, Clone)]
struct Cloud {
    #[serde(default)]
    auth: HashMap<String, serde_yaml_ng::Value>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<String>,
    verify: Option<bool>,
}

/// An absolute path from `env[key]`; empty or relative values count as unset (the
/// XDG rule), so a search never falls back on the working directory unasked.
fn absolute(env: &HashMap<String, String>, key: &str) -> Option<PathBuf> {
    env.get(key).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// Where openstacksdk looks for `file`: the working directory, the user's config
/// directory (`$XDG_CONFIG_HOME/openstack`, else `$HOME/.config/openstack`), then
/// `/etc/openstack`.
fn clouds_paths(env: &HashMap<String, String>, file: &str) -> Vec<PathBuf> {
    let cwd = std::env::current_dir().map(|d| d.join(file)).unwrap_or_else(|_| PathBuf::from(file));
    let mut v = vec![cwd];
    if let Some(c) = absolute(env, "XDG_CONFIG_HOME").or_else(|| absolute(env, "HOME").map(|h| h.join(".config"))) {
        v.push(c.join("openstack").join(file));
    }
    v.push(Path::new("/etc/openstack").join(file));
    v
}

/// The clouds of `path`; `None` when there is no such file. A file that exists but
/// cannot be read, or is not YAML, is an error (never skipped in silence).
fn read_clouds(path: &Path) -> Result<Option<CloudsFile>> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_yaml_ng::from_str(&s)
            .map(Some)
            .map_err(|e| Error::input(format!("{}: not a valid clouds.yaml: {e}", path.display())).caused_by(e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

fn shown(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

fn from_clouds_yaml(name: &str, env: &HashMap<String, String>) -> Result<(Credentials, TlsSettings)> {
    let explicit = env.get("OS_CLIENT_CONFIG_FILE").map(|s| s.trim()).filter(|s| !s.is_empty());
    let paths = match explicit {
        Some(p) => vec![PathBuf::from(p)],
        None => clouds_paths(env, "clouds.yaml"),
    };
    let mut found = None;
    // The files that exist, with the clouds they hold.
    let mut files: Vec<(PathBuf, Vec<String>)> = vec![];
    for p in &paths {
        if let Some(f) = read_clouds(p)? {
            if let Some(c) = f.clouds.get(name) {
                found = Some(c.clone());
                break;
            }
            let mut names: Vec<String> = f.clouds.into_keys().collect();
            names.sort();
            files.push((p.clone(), names));
        }
    }
    let mut cloud = match found {
        Some(c) => c,
        None if files.is_empty() => {
            return Err(match explicit {
                Some(p) => {
                    Error::input(format!("OS_CLIENT_CONFIG_FILE={p}: no such file (OS_CLOUD={name})")).hint(format!(
                        "fix the path, or unset OS_CLIENT_CONFIG_FILE to look in {}",
                        shown(&clouds_paths(env, "clouds.yaml"))
                    ))
                }
                None => Error::input(format!("OS_CLOUD={name}: no clouds.yaml found")).hint(format!(
                    "looked for {}; put the file there, or name it with OS_CLIENT_CONFIG_FILE",
                    shown(&paths)
                )),
            });
        }
        None => {
            let inside = files
                .iter()
                .map(|(p, names)| {
                    let mut n = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
                    if names.len() > 10 {
                        n.push_str(", ...");
                    }
                    format!("{} has {}", p.display(), if n.is_empty() { "no clouds".to_string() } else { n })
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::input(format!("OS_CLOUD={name}: no such cloud in clouds.yaml"))
                .hint(format!("{inside} (looked in {})", shown(&paths))));
        }
    };
    // secure.yaml holds the secrets of the same clouds, merged over clouds.yaml.
    for p in clouds_paths(env, "secure.yaml") {
        if let Some(f) = read_clouds(&p)?
            && let Some(s) = f.clouds.get(name)
        {
            cloud.auth.extend(s.auth.clone());
            break;
        }
    }
    let get = |k: &str| -> Option<String> {
        match cloud.auth.get(k)? {
            serde_yaml_ng::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let auth_url =
        get("auth_url").ok_or_else(|| Error::input(format!("cloud {name} in clouds.yaml has no auth.auth_url")))?;
    let k = keystone_from(
        &auth_url,
        &get,
        env.get("OS_REGION_NAME").cloned().or(cloud.region_name.clone()),
        env.get("OS_INTERFACE").cloned().or(cloud.interface.clone()),
        env.get("OS_STORAGE_URL").cloned(),
    )?;
    let tls = TlsSettings { cacert: cloud.cacert.map(PathBuf::from), insecure: cloud.verify == Some(false) };
    Ok((Credentials::Keystone(k), tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_debug_never_shows_auth_values() {
        let f: CloudsFile = serde_yaml_ng::from_str(
            "clouds:\n  c:\n    auth:\n      password: hunter2-pw\n      application_credential_secret: s3cr3t-ac\n      username: u\n",
        )
        .unwrap();
        let d = format!("{f:?}");
        assert!(d.contains("password") && d.contains("username"), "{d}");
        assert!(!d.contains("hunter2-pw") && !d.contains("s3cr3t-ac"), "{d}");
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn v1_and_token_and_missing() {
        let (c, _) = from_env(&env(&[("ST_AUTH", "http://a/auth/v1.0"), ("ST_USER", "t:u"), ("ST_KEY", "k")])).unwrap();
        assert!(matches!(c, Credentials::V1 { .. }));
        let (c, _) = from_env(&env(&[("OS_STORAGE_URL", "http://s/v1/AUTH_x"), ("OS_AUTH_TOKEN", "t")])).unwrap();
        assert!(matches!(c, Credentials::Token { .. }));
        let e = from_env(&env(&[])).unwrap_err();
        assert!(e.msg.contains("no credentials"));
        assert!(from_env(&env(&[("ST_AUTH", "x")])).unwrap_err().msg.contains("ST_USER"));
    }

    #[test]
    fn keystone_password_json() {
        let (c, _) = from_env(&env(&[
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "pw"),
            ("OS_PROJECT_NAME", "demo"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ]))
        .unwrap();
        let Credentials::Keystone(k) = c else { panic!() };
        let KeystoneMethod::Password { user, project, .. } = &k.method else { panic!() };
        assert_eq!(user.to_json(), serde_json::json!({"name": "demo", "domain": {"name": "Default"}}));
        assert_eq!(project.to_json(), serde_json::json!({"name": "demo", "domain": {"name": "Default"}}));
        assert_eq!(k.interface, "public");
    }

    #[test]
    fn clouds_yaml_is_searched_in_absolute_places_only() {
        let cwd = std::env::current_dir().unwrap().join("clouds.yaml");
        let etc = PathBuf::from("/etc/openstack/clouds.yaml");
        let p = clouds_paths(&env(&[("HOME", "/home/u")]), "clouds.yaml");
        assert_eq!(p, vec![cwd.clone(), PathBuf::from("/home/u/.config/openstack/clouds.yaml"), etc.clone()]);
        let p = clouds_paths(&env(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "/cfg")]), "clouds.yaml");
        assert_eq!(p[1], PathBuf::from("/cfg/openstack/clouds.yaml"));
        // An empty HOME (or a relative one, or a relative XDG_CONFIG_HOME) is unset: the
        // working directory is searched once, as itself, never as "~".
        for e in [vec![("HOME", "")], vec![("HOME", "rel")], vec![("XDG_CONFIG_HOME", "rel")], vec![]] {
            assert_eq!(clouds_paths(&env(&e), "clouds.yaml"), vec![cwd.clone(), etc.clone()], "{e:?}");
        }
    }

    #[test]
    fn keystone_app_credential_and_clouds_yaml() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clouds.yaml");
        std::fs::write(
            &p,
            "clouds:\n  lab:\n    auth:\n      auth_url: http://k:5000\n      application_credential_id: abc\n      application_credential_secret: s3\n    region_name: R1\n    verify: false\n",
        )
        .unwrap();
        let (c, tls) = from_env(&env(&[
            ("OS_CLOUD", "lab"),
            ("OS_CLIENT_CONFIG_FILE", p.to_str().unwrap()),
            ("HOME", "/nonexistent"),
        ]))
        .unwrap();
        let Credentials::Keystone(k) = c else { panic!() };
        assert!(matches!(k.method, KeystoneMethod::AppCredential { .. }));
        assert_eq!(k.region.as_deref(), Some("R1"));
        assert!(tls.insecure);
        let e = from_env(&env(&[("OS_CLOUD", "nope"), ("OS_CLIENT_CONFIG_FILE", p.to_str().unwrap())])).unwrap_err();
        assert!(e.msg.contains("no such cloud"));
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("has lab")), "{:?}", e.hint);
        let gone = d.path().join("gone.yaml");
        let e = from_env(&env(&[("OS_CLOUD", "lab"), ("OS_CLIENT_CONFIG_FILE", gone.to_str().unwrap())])).unwrap_err();
        assert!(e.msg.contains("no such file") && e.msg.contains(gone.to_str().unwrap()), "{}", e.msg);
        assert_eq!(e.kind, crate::error::ErrorKind::BadInput);
    }
}
